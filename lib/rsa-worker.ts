/**
 * The worker side of {@link RsaPool}: decrypts batches of RSA blocks with private keys it
 * caches by id. Runs the same code as the inline path, implicit rejection included. The pool
 * checks each message's public facts (its length, `strict`, `maxMessageBlocks`) and sends it
 * as blocks, one entry each, which it joins again.
 *
 * A batch travels as a few typed arrays, not an object per block: cloning many small
 * objects between threads cost the main thread about 15 µs a message.
 * @module
 */
import crypto from 'node:crypto'
import { P2snError } from './errors.js'
import { PrivateKey } from './keys.js'
import { openKeyCheck } from './core/handshake.js'
import { decryptMessage } from './core/rsa-message.js'
import { resolveEngine, type EngineName } from './rsa-engine.js'

/** Per-block flag of a {@link DecryptBatch}: `rejection: 'error'`. */
export const FLAG_REJECT_WITH_ERROR = 2
/** Per-block flag of a {@link DecryptBatch}: the forge engine. */
export const FLAG_FORGE = 4
/**
 * Per-block flag of a {@link DecryptBatch}: a handshake's key check, answered P2SN:KEYCHECK or
 * no bytes (`openKeyCheck`), with no synthetic message.
 */
export const FLAG_KEYCHECK = 8

/** Blocks as the pool sends them. */
export interface DecryptBatch {
  /** The keys the batch uses: an id for this worker's cache, and PKCS#1 DER read on first sight. */
  keys: Array<{ id: string, der: Uint8Array }>
  /** Every block, one after the other. */
  ciphertexts: Uint8Array
  /** Each block's length (its key's k). */
  lengths: Uint32Array
  /** Each block's key, as an index into `keys`. */
  keyIndex: Uint16Array
  /** Each block's FLAG_* bits. */
  flags: Uint8Array
}

/** The answers: every block's plaintext, one after the other, with its length, or −1 and an error. */
export interface DecryptBatchResult {
  messages: Uint8Array
  lengths: Int32Array
  /** A P2snError's code and message per failed block, in order (errors lose their class across threads). */
  errors: Array<{ code: P2snError['code'], message: string }>
}

/** Enough for every server key and then some; a process rarely holds more than a few. */
const MAX_CACHED_KEYS = 64
const cache = new Map<string, PrivateKey>()

function keyFor (entry: { id: string, der: Uint8Array }): PrivateKey {
  let key = cache.get(entry.id)
  if (key === undefined) {
    if (cache.size >= MAX_CACHED_KEYS) cache.clear()
    key = new PrivateKey(crypto.createPrivateKey({ key: Buffer.from(entry.der), format: 'der', type: 'pkcs1' }))
    cache.set(entry.id, key)
  }
  return key
}

/** Decrypts a batch; Piscina calls this in a worker thread. */
export default function decryptBatch (batch: DecryptBatch): DecryptBatchResult {
  // A key that cannot be read fails its own blocks, not the whole batch.
  const keys = batch.keys.map((entry) => {
    try {
      return keyFor(entry)
    } catch (err) {
      // Our own key, unreadable here: this side's failure, never the peer's.
      return new P2snError('ERR_P2SN_ENGINE', `a worker could not load the private key (${err instanceof Error ? err.message : String(err)}); the key handed to the pool is damaged`, { cause: err })
    }
  })
  const count = batch.lengths.length
  const lengths = new Int32Array(count)
  const parts: Buffer[] = []
  const errors: DecryptBatchResult['errors'] = []
  let offset = 0
  for (let i = 0; i < count; i++) {
    const length = batch.lengths[i]!
    const ciphertext = Buffer.from(batch.ciphertexts.buffer, batch.ciphertexts.byteOffset + offset, length)
    offset += length
    const flags = batch.flags[i]!
    const engine: EngineName = (flags & FLAG_FORGE) !== 0 ? 'forge' : 'openssl'
    try {
      const key = keys[batch.keyIndex[i]!]!
      if (key instanceof Error) throw key
      const message = (flags & FLAG_KEYCHECK) !== 0
        ? openKeyCheck(key, ciphertext, resolveEngine(engine))
        : decryptMessage(key, ciphertext, { rejection: (flags & FLAG_REJECT_WITH_ERROR) !== 0 ? 'error' : 'implicit', engine })
      lengths[i] = message.length
      parts.push(message)
    } catch (err) {
      lengths[i] = -1
      errors.push(err instanceof P2snError
        ? { code: err.code, message: err.message }
        : { code: 'ERR_P2SN_ENGINE', message: `the rsa work failed in a worker (${err instanceof Error ? err.message : String(err)}); this side's fault, not the peer's` })
    }
  }
  return { messages: Buffer.concat(parts), lengths, errors }
}
