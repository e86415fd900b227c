/**
 * `npm run timing`: decryption time per class of ciphertext (valid, and each way of being
 * invalid), so anyone can check that implicit rejection, and the handshake's key check, take
 * the same time for all. Prints
 * the median per class and Welch's t statistic of each class against the valid one; |t| below
 * about 4.5 (the usual TVLA threshold) shows no difference this measurement can see. Not a test.
 */
import { KEYCHECK } from '../lib/core/handshake.js'
import { decryptsTo } from '../lib/core/rsa-message.js'
import { decryptMessage, generateKeyPair } from '../lib/index.js'
import { encodes, unpadImplicit } from '../lib/implicit-rejection.js'
import { opensslEngine } from '../lib/rsa-engine.js'
import { CIPHERTEXT_CLASSES, ciphertextOf, type CiphertextClass } from '../test/helpers/ciphertext-classes.js'

const SAMPLES = Number(process.env.P2SN_TIMING_SAMPLES ?? 4000)

interface Stats { mean: number, variance: number, median: number, n: number }

function stats (values: number[]): Stats {
  const n = values.length
  const mean = values.reduce((a, b) => a + b, 0) / n
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)
  const sorted = [...values].sort((a, b) => a - b)
  return { mean, variance, median: sorted[Math.floor(n / 2)]!, n }
}

function welch (a: Stats, b: Stats): number {
  return (a.mean - b.mean) / Math.sqrt(a.variance / a.n + b.variance / b.n)
}

/** Where each timed call's result goes, so that the compiler cannot drop the call. */
const sink: unknown[] = [undefined]

/**
 * Times `run` on each class's inputs in a shuffled order of classes, dropping the slowest 5% of
 * samples (interrupts, GC); a sample is `batch` calls in a row over the class's inputs, timed
 * together, which a call of under a microsecond needs (one call at a time, the clock's own jitter
 * and where each input lay in memory showed as |t| up to 34 for a call that did nothing). The
 * input is fetched inside the clock the same way for every class. The first class is the one the
 * others are compared with.
 */
function measure<T> (label: string, inputs: Map<string, T[]>, run: (input: T) => unknown, batch = 1): void {
  const classes = [...inputs.keys()]
  const times = new Map<string, number[]>(classes.map((cls) => [cls, []]))
  const order = classes.flatMap((cls) => Array.from({ length: SAMPLES }, (_, i) => [cls, i] as const))
  shuffle(order)
  for (const [cls, i] of order) {
    const of = inputs.get(cls)!
    const start = process.hrtime.bigint()
    for (let j = 0; j < batch; j++) sink[0] = run(of[(i + j) % of.length]!)
    times.get(cls)!.push(Number(process.hrtime.bigint() - start) / batch)
  }
  const trimmed = (values: number[]): number[] => [...values].sort((a, b) => a - b).slice(0, Math.floor(values.length * 0.95))
  const first = stats(trimmed(times.get(classes[0]!)!))
  console.log(`${label} (${SAMPLES} samples a class${batch > 1 ? ` of ${batch} calls` : ''}, fastest 95%)`)
  for (const cls of classes) {
    const s = stats(trimmed(times.get(cls)!))
    const t = cls === classes[0] ? '' : `  t = ${welch(s, first).toFixed(2).padStart(6)}`
    console.log(`  ${cls.padEnd(24)} median ${(s.median / 1000).toFixed(3).padStart(9)} µs${t}`)
  }
}

function shuffle (items: unknown[]): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]]
  }
}

/** One ciphertext and its raw decryption. */
interface Sample { ciphertext: Buffer, em: Buffer }

const keys = await generateKeyPair({ bits: 2048 })
const rejectionKey = keys.privateKey.rejectionKey
const k = keys.privateKey.size
const PER_CLASS = 64

/**
 * For each named class, 64 ciphertexts carrying its text, each with its raw decryption. Made
 * in a shuffled order of classes and copied into one arena at shuffled places, so that where a
 * class's objects and blocks happen to lie in memory is not timed with it (a review measured
 * 45-70 ns for blocks allocated apart).
 */
function samples (classes: Record<string, { cls: CiphertextClass, text: Buffer }>): Map<string, Sample[]> {
  const made = new Map<string, Sample[]>(Object.keys(classes).map((name) => [name, []]))
  const order = Object.keys(classes).flatMap((name) => Array<string>(PER_CLASS).fill(name))
  shuffle(order)
  const arena = Buffer.alloc(order.length * 2 * k)
  for (const [slot, name] of order.entries()) {
    const { cls, text } = classes[name]!
    const ciphertext = arena.subarray(slot * 2 * k, slot * 2 * k + k)
    const em = arena.subarray(slot * 2 * k + k, (slot + 1) * 2 * k)
    ciphertextOf(cls, keys, text).copy(ciphertext)
    opensslEngine.decryptRaw(keys.privateKey, ciphertext).copy(em)
    made.get(name)!.push({ ciphertext, em })
  }
  return made
}

const message = Buffer.from('P2SN timing probe, 32 bytes long')
const messages = samples(Object.fromEntries(CIPHERTEXT_CLASSES.map((cls) => [cls, { cls, text: message }])))
measure('unpadding only (implicit rejection, after raw RSA)', messages, ({ ciphertext, em }) => unpadImplicit(Buffer.from(em), ciphertext, rejectionKey))
measure('whole decryption (decryptMessage, openssl engine)', messages, ({ ciphertext }) => decryptMessage(keys, ciphertext))

// The handshake's key check asks only whether a block is P2SN:KEYCHECK: each class carries it,
// and a well-padded block of another message of its length is what it must not tell from a bad
// padding either.
const keychecks = samples({
  'valid, another message': { cls: 'valid', text: Buffer.from('P2SN:KEYCHECX') },
  ...Object.fromEntries(CIPHERTEXT_CLASSES.map((cls) => [cls, { cls, text: KEYCHECK }]))
})
// A sample is 64 calls: the key check alone takes about half a microsecond.
measure('key check only (encodes, after raw RSA)', keychecks, ({ em }) => encodes(em, KEYCHECK), PER_CLASS)
measure('whole key check (decryptsTo, openssl engine)', keychecks, ({ ciphertext }) => decryptsTo(keys.privateKey, ciphertext, KEYCHECK, opensslEngine))
