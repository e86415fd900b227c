/**
 * Benchmark of issue 2: messages per second through the full stream chain
 * (encryptor → Base64 → joiner → splitter → Base64 → decryptor) against the raw OpenSSL bound
 * (one public plus one private operation per message), measured in alternating slices, next to
 * a bare chain of plain calls (bench/bare.ts) and the crypto alone with the padding checked.
 */
import crypto from 'node:crypto'
import { once } from 'node:events'
import { Base64Codec, FrameJoiner, FrameSplitter, RsaCipher, generateKeyPair, type EngineName, type KeyPair } from '../lib/index.js'
import { bareChain } from './bare.js'
import { alternate, formatRate, messagesThrough, opensslBound, protocolCrypto } from './measure.js'

const MESSAGE = crypto.randomBytes(245)

/** A running chain and a function that sends `count` messages through it and waits for them. */
function makeChain (keys: KeyPair, engine: EngineName): (count: number) => Promise<void> {
  const head = RsaCipher.encryptor(keys.publicKey, { engine })
  const tail = RsaCipher.decryptor(keys.privateKey, { engine })
  head.pipe(Base64Codec.encoder()).pipe(new FrameJoiner()).pipe(new FrameSplitter())
    .pipe(Base64Codec.decoder()).pipe(tail)
  let waiting = 0
  let done: (() => void) | undefined
  tail.on('data', (message: Buffer) => {
    if (message.length !== MESSAGE.length) throw new Error('the chain corrupted a message')
    if (--waiting === 0) done?.()
  })
  return async (count) => {
    waiting = count
    const finished = new Promise<void>((resolve) => { done = resolve })
    for (let i = 0; i < count; i++) {
      if (!head.write(MESSAGE)) await once(head, 'drain')
    }
    await finished
  }
}

/** Runs the benchmark and prints its lines. */
export async function benchStreamChain (): Promise<void> {
  const keys = await generateKeyPair({ bits: 2048 })
  const bound = opensslBound(keys, MESSAGE)
  const openssl = makeChain(keys, 'openssl')
  const forge = makeChain(keys, 'forge')
  const bare = messagesThrough(bareChain(keys), MESSAGE)
  const checked = protocolCrypto(keys, MESSAGE)
  const fast = await alternate({ bound, openssl, bare, crypto: checked }, { slices: 12, count: 375 })
  const slow = await alternate({ bound, forge }, { slices: 4, count: 8 })
  console.log('stream chain, 2048-bit keys, 245-byte messages (encryptor → base64 → joiner → splitter → base64 → decryptor)')
  console.log(`  openssl bound (1 public + 1 private op): ${formatRate(fast.bound)}`)
  console.log(`  chain, openssl engine:                  ${formatRate(fast.openssl)}  ratio ${fast.ratio('openssl', 'bound')} of the bound (target ≥ 0.95×)`)
  console.log(`  reference: bare, no streams:            ${formatRate(fast.bare)}  ratio ${fast.ratio('bare', 'bound')} of the bound (bench/bare.ts: the same calls one after another)`)
  console.log(`  part: crypto alone, padding checked:    ${formatRate(fast.crypto)}  ratio ${fast.ratio('crypto', 'bound')} of the bound (encryptMessage, decryptMessage: what checking the padding leaves)`)
  console.log(`  chain, forge engine:                    ${formatRate(slow.forge)}  ratio ${slow.ratio('forge', 'bound')} of the bound`)
}
