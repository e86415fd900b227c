/**
 * The OpenSSL engine, counting its private-key operations: for the tests that a message too
 * long, a refused peer or a dropped handshake costs no RSA work, and that long messages are
 * decrypted a block a turn.
 * @module
 */
import { opensslEngine, type RsaEngine } from '../../lib/index.js'

/** What {@link countingEngine} gives. */
interface CountingEngine {
  /** The engine to give the server, `decryptMessage` or a decryptor. */
  engine: RsaEngine
  /** The private-key operations done so far. */
  decrypted: () => number
  /** For each operation so far, the turn of the event loop it ran in (0 for each without `turns`). */
  turnsOfBlocks: number[]
  /** Stops counting turns; call it when done, or the turns keep the process busy. */
  stop: () => void
}

/**
 * The OpenSSL engine, counting its private-key operations. With `turns`, it also notes for each
 * the turn of the event loop it ran in: a count of `setImmediate` rounds, run from now until
 * `stop()`. Without, no rounds run, since they would take the CPU from what a test measures.
 */
export function countingEngine (options: { turns?: boolean } = {}): CountingEngine {
  let turn = 0
  let timer: NodeJS.Immediate | undefined
  if (options.turns === true) timer = setImmediate(function next () { turn++; timer = setImmediate(next) })
  const turnsOfBlocks: number[] = []
  const engine: RsaEngine = {
    ...opensslEngine,
    decryptRaw (key, ciphertext) {
      turnsOfBlocks.push(turn)
      return opensslEngine.decryptRaw(key, ciphertext)
    },
    // Where OpenSSL does implicit rejection itself (3.2+), a block is decrypted here instead;
    // undefined (no such OpenSSL) falls back to decryptRaw, which counts it.
    decryptImplicit (key, ciphertext) {
      const message = opensslEngine.decryptImplicit!(key, ciphertext)
      if (message !== undefined) turnsOfBlocks.push(turn)
      return message
    }
  }
  return { engine, decrypted: () => turnsOfBlocks.length, turnsOfBlocks, stop: () => { clearImmediate(timer) } }
}
