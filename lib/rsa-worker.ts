/**
 * The worker side of {@link RsaPool}: decrypts messages with private keys it caches by id. Runs
 * the same code as the inline path, implicit rejection included.
 * @module
 */
import crypto from 'node:crypto'
import { P2snError } from './errors.js'
import { PrivateKey } from './keys.js'
import { decryptMessage } from './rsa-cipher.js'
import type { EngineName } from './rsa-engine.js'

/** One decryption, as the pool sends it. */
export interface DecryptTask {
  /** Identifies the key in this worker's cache. */
  keyId: string
  /** PKCS#1 DER of the private key, read the first time this worker meets `keyId`. */
  keyDer: Uint8Array
  ciphertext: Uint8Array
  strict: boolean
  rejection: 'implicit' | 'error'
  engine: EngineName
}

/** The answer: the message, or a P2snError's code and message (errors lose their class across threads). */
export type DecryptResult = { message: Uint8Array } | { code: P2snError['code'], error: string }

/** Enough for every server key and then some; a process rarely holds more than a few. */
const MAX_CACHED_KEYS = 64
const keys = new Map<string, PrivateKey>()

function keyFor (task: DecryptTask): PrivateKey {
  let key = keys.get(task.keyId)
  if (key === undefined) {
    if (keys.size >= MAX_CACHED_KEYS) keys.clear()
    key = new PrivateKey(crypto.createPrivateKey({ key: Buffer.from(task.keyDer), format: 'der', type: 'pkcs1' }))
    keys.set(task.keyId, key)
  }
  return key
}

/** Decrypts a batch of tasks; Piscina calls this in a worker thread. */
export default function decryptBatch (tasks: DecryptTask[]): DecryptResult[] {
  return tasks.map((task) => {
    try {
      const message = decryptMessage(keyFor(task), Buffer.from(task.ciphertext.buffer, task.ciphertext.byteOffset, task.ciphertext.byteLength), task)
      return { message }
    } catch (err) {
      if (err instanceof P2snError) return { code: err.code, error: err.message }
      throw err
    }
  })
}
