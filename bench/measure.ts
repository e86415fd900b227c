/**
 * Timing helpers for the benchmarks. This machine's speed drifts by ±15% within seconds, so
 * contenders run in alternating short slices and are compared by their summed times.
 */
import crypto from 'node:crypto'
import { decryptMessage, encryptMessage, type KeyPair } from '../lib/index.js'

/** `global.gc`, where node runs with `--expose-gc` (as `npm run bench` does). */
const collectGarbage = (globalThis as { gc?: () => void }).gc

/** A contender: does `count` units of work. */
export type Workload = (count: number) => void | Promise<void>

/** Options of {@link alternate}. */
export interface AlternateOptions {
  /** Rounds; each runs every contender once. */
  slices: number
  /** Units of work per contender per round. */
  count: number
  /** Rounds run first and not counted. Default 1. */
  warmup?: number
}

/**
 * Runs the contenders in turn, round after round, and returns each one's rate in units per
 * second over all counted rounds. For a fair share of places, make `slices` a multiple of the
 * number of contenders.
 */
export async function alternate<T extends Record<string, Workload>> (contenders: T, options: AlternateOptions): Promise<Rates<keyof T>> {
  const names = Object.keys(contenders) as Array<keyof T>
  const elapsed = new Map<keyof T, bigint>(names.map((name) => [name, 0n]))
  const rounds = new Map<keyof T, number[]>(names.map((name) => [name, []]))
  const warmup = options.warmup ?? 1
  for (let round = 0; round < warmup + options.slices; round++) {
    // Each round starts one contender later, so every contender runs first, second and so on
    // equally often. What runs just before each one stays the same (but when it runs first):
    // the order of `contenders` still matters a little.
    for (let turn = 0; turn < names.length; turn++) {
      const name = names[(round + turn) % names.length]!
      // Each slice starts on a collected heap, so that none pays for the garbage of the one
      // before it: without this, whichever contender ran right after the OpenSSL bound was
      // 3-4% slower than in the other order (handshakes, the same code in both places). A
      // collection here takes the same time after every contender (16-18 ms each, measured),
      // so it hides no contender's own cost.
      collectGarbage?.()
      const start = process.hrtime.bigint()
      await contenders[name]!(options.count)
      const took = process.hrtime.bigint() - start
      if (round >= warmup) {
        elapsed.set(name, elapsed.get(name)! + took)
        rounds.get(name)!.push(Number(took))
      }
    }
  }
  const rates = {} as Record<keyof T, number>
  for (const name of names) {
    rates[name] = (options.slices * options.count) / (Number(elapsed.get(name)!) / 1e9)
  }
  // Base's time over the parts' together: for the whole run, then for each round, to show how
  // far one round's figure can stray from the whole run's. A ratio is the estimate of one part.
  const estimate = (base: keyof T, parts: Array<keyof T>): string => {
    const each = rounds.get(base)!.map((took, round) => took / parts.reduce((sum, part) => sum + rounds.get(part)![round]!, 0))
    const whole = Number(elapsed.get(base)!) / parts.reduce((sum, part) => sum + Number(elapsed.get(part)!), 0)
    return `${whole.toFixed(3)}× (rounds ${Math.min(...each).toFixed(2)}–${Math.max(...each).toFixed(2)})`
  }
  return Object.assign(rates, { ratio: (name: keyof T, base: keyof T) => estimate(base, [name]), estimate })
}

/**
 * What {@link alternate} measured: each contender's rate over all counted rounds;
 * `ratio(name, base)`, the ratio of two rates with the range of the rounds' own ratios, as
 * "0.886× (rounds 0.84–0.93)"; and `estimate(base, parts)`, what a unit of work made of
 * `parts` (each measured alone) would score against `base`: base's time over the parts' summed
 * times, with its rounds' range the same way. An estimate, not a bound: each part measured alone
 * runs warmer than in a mix, and the drift moves it as much as any ratio.
 */
export type Rates<K extends PropertyKey> = Record<K, number> & {
  ratio: (name: K, base: K) => string
  estimate: (base: K, parts: K[]) => string
}

/**
 * The OpenSSL bound, the baseline the protocol's rates are compared with: for each unit of
 * work, `pairsPerUnit` × (a public-key PKCS#1 v1.5 encryption of `message` and a raw
 * private-key operation on its ciphertext), the way the protocol spends them.
 */
export function opensslBound (keys: KeyPair, message: Buffer, pairsPerUnit = 1): Workload {
  const pub = keys.publicKey.keyObject
  const priv = keys.privateKey.keyObject
  return (count) => {
    for (let i = 0; i < count * pairsPerUnit; i++) {
      const ct = crypto.publicEncrypt({ key: pub, padding: crypto.constants.RSA_PKCS1_PADDING }, message)
      crypto.privateDecrypt({ key: priv, padding: crypto.constants.RSA_NO_PADDING }, ct)
    }
  }
}

/**
 * A contender of plain calls: per unit, `perUnit` × `message` taken through `through`, each
 * result checked for the length it went in with.
 */
export function messagesThrough (through: (message: Buffer) => Buffer, message: Buffer, perUnit = 1): Workload {
  return (count) => {
    for (let i = 0; i < count * perUnit; i++) {
      if (through(message).length !== message.length) throw new Error('a message came back changed')
    }
  }
}

/**
 * The crypto of our messages, with nothing around it: per unit, `pairsPerUnit` × (the core's
 * `encryptMessage` and `decryptMessage` of one block, its padding checked with implicit
 * rejection). Against {@link opensslBound} it shows what checking the padding costs on this
 * platform (JavaScript on Node 20's OpenSSL 3.0, OpenSSL's own where it has implicit rejection).
 */
export function protocolCrypto (keys: KeyPair, message: Buffer, pairsPerUnit = 1): Workload {
  return messagesThrough((plain) => decryptMessage(keys, encryptMessage(keys, plain)), message, pairsPerUnit)
}

/** Microseconds a unit of a rate takes, as "41 µs". */
export function formatUnit (perSecond: number): string {
  return `${(1e6 / perSecond).toFixed(0)} µs`
}

/** A rate as "12,345/s". */
export function formatRate (perSecond: number): string {
  return `${Math.round(perSecond).toLocaleString('en-US')}/s`
}
