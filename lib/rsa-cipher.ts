/**
 * RSAES-PKCS1-v1_5 for P2SN messages, as functions and as message streams.
 *
 * A message of at most k − 11 bytes is one k-byte block, exactly as Python's `rsa.encrypt`
 * makes it. A longer message is this project's extension: its (k − 11)-byte pieces encrypted
 * one by one and concatenated in one frame. Decryption uses implicit rejection unless told
 * otherwise.
 * @module
 */
import { setMaxListeners } from 'node:events'
import { toBuffer } from './arguments.js'
import { P2snError } from './errors.js'
import { toPrivateKey, toPublicKey, type PrivateKey, type PrivateKeyInput, type PublicKey, type PublicKeyInput } from './keys.js'
import { MessageTransform, type InvalidInputOptions } from './message-transform.js'
import { unpadImplicit } from './implicit-rejection.js'
import { resolveEngine, type EngineName, type RsaEngine } from './rsa-engine.js'
import type { RsaPool } from './rsa-pool.js'

/** Options of the encrypting side. */
export interface EncryptOptions {
  /** RSA engine: `'openssl'` (default), `'forge'` or an engine object. */
  engine?: EngineName | RsaEngine
  /**
   * Refuse messages longer than one block (k − 11 bytes) with `ERR_P2SN_MESSAGE_TOO_LONG`, for
   * peers that only know the standard, such as the Python reference. Default `false`.
   */
  strict?: boolean
}

/** Options of the decrypting side. */
export interface DecryptOptions extends EncryptOptions {
  /**
   * What a block with bad padding decrypts to. `'implicit'` (default): a synthetic message
   * derived from the ciphertext and the key, the same every time, with no error and no timing
   * difference, so that no one learns whether the padding was good. `'error'`: throw
   * `ERR_P2SN_DECRYPT`. Riskier: whoever sees that error, or what you do because of it, holds a
   * padding oracle (Bleichenbacher 1998, the Marvin attack) that can decrypt recorded traffic.
   */
  rejection?: 'implicit' | 'error'
}

/** Messages one pooled decryptor may have in the pool at once, whatever the number of workers. */
const MAX_POOLED_IN_FLIGHT = 16

/** Options of {@link RsaCipher}. */
export interface RsaCipherOptions extends DecryptOptions, InvalidInputOptions {
  /**
   * Decrypt in this pool's worker threads instead of on the event loop (decryptor only), up to
   * four messages a worker at once (sixteen at most); they still come out in order. When the pool's queue is
   * full the stream waits for room instead of failing. Default: inline.
   */
  pool?: RsaPool
}

/**
 * Encrypts one message to a public key.
 *
 * @returns one k-byte block per k − 11 bytes of message (one block for an empty message)
 * @throws P2snError `ERR_P2SN_MESSAGE_TOO_LONG` when `strict` and the message needs more than one block
 */
export function encryptMessage (publicKey: PublicKeyInput, message: Uint8Array | string, options: EncryptOptions = {}): Buffer {
  return encryptWith(toPublicKey(publicKey), resolveEngine(options.engine), toBuffer(message), options)
}

function encryptWith (key: PublicKey, engine: RsaEngine, plaintext: Buffer, options: EncryptOptions): Buffer {
  const room = key.maxBlockPlaintext
  if (plaintext.length <= room) return engine.encryptBlock(key, plaintext)
  if (options.strict === true) {
    throw new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', `a ${plaintext.length}-byte message does not fit one rsa block of ${room} bytes; send shorter messages or turn off strict to use multi-block messages`)
  }
  const blocks = Math.ceil(plaintext.length / room)
  const out = Buffer.allocUnsafe(blocks * key.size)
  for (let i = 0; i < blocks; i++) {
    engine.encryptBlock(key, plaintext.subarray(i * room, (i + 1) * room)).copy(out, i * key.size)
  }
  return out
}

/**
 * Decrypts one message with a private key.
 *
 * @throws P2snError `ERR_P2SN_BAD_CIPHERTEXT` when the length is not a multiple of k or a block
 *   is not below the modulus (public facts, so no oracle); `ERR_P2SN_MESSAGE_TOO_LONG` when
 *   `strict` and there is more than one block; `ERR_P2SN_DECRYPT` only with `rejection: 'error'`
 */
export function decryptMessage (privateKey: PrivateKeyInput, ciphertext: Uint8Array, options: DecryptOptions = {}): Buffer {
  const key = toPrivateKey(privateKey)
  return decryptWith(key, resolveEngine(options.engine), toBuffer(ciphertext), options)
}

function decryptWith (key: PrivateKey, engine: RsaEngine, ciphertext: Buffer, options: DecryptOptions): Buffer {
  const k = key.size
  const blocks = ciphertext.length / k
  if (ciphertext.length === 0 || !Number.isInteger(blocks)) {
    throw new P2snError('ERR_P2SN_BAD_CIPHERTEXT', `a ${ciphertext.length}-byte ciphertext is not made of ${k}-byte rsa blocks; the peer encrypted to another key or the data was damaged`)
  }
  if (blocks > 1 && options.strict === true) {
    throw new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', `the ciphertext holds ${blocks} rsa blocks and strict allows one; turn off strict to accept multi-block messages`)
  }
  const modulus = key.publicKey.numbers.n
  const rejectionKey = key.rejectionKey
  const parts: Buffer[] = []
  let valid = 1
  for (let i = 0; i < blocks; i++) {
    const block = ciphertext.subarray(i * k, (i + 1) * k)
    if (Buffer.compare(block, modulus) >= 0) {
      throw new P2snError('ERR_P2SN_BAD_CIPHERTEXT', 'an rsa block is not below the modulus; the peer encrypted to another key or the data was damaged')
    }
    const { message, valid: blockValid } = unpadImplicit(engine.decryptRaw(key, block), block, rejectionKey)
    valid &= blockValid
    parts.push(message)
  }
  if (options.rejection === 'error' && valid === 0) {
    throw new P2snError('ERR_P2SN_DECRYPT', 'could not decrypt the message; it was not encrypted to this key or was damaged')
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}

/**
 * A message stream that encrypts or decrypts: one message written, one message read. Make one
 * with {@link RsaCipher.encryptor} or {@link RsaCipher.decryptor}.
 */
export class RsaCipher extends MessageTransform {
  /**
   * Encrypts each message written to it to `publicKey`.
   * @param publicKey - a public key, a key pair, or PEM text
   */
  static encryptor (publicKey: PublicKeyInput, options: EncryptOptions = {}): RsaCipher {
    const key = toPublicKey(publicKey)
    const engine = resolveEngine(options.engine)
    return new RsaCipher((message) => encryptWith(key, engine, message, options))
  }

  /**
   * Decrypts each ciphertext written to it with `privateKey`.
   * @param privateKey - a private key, a key pair, or PEM text
   */
  static decryptor (privateKey: PrivateKeyInput, options: RsaCipherOptions = {}): RsaCipher {
    const key = toPrivateKey(privateKey)
    const engine = resolveEngine(options.engine)
    const { pool } = options
    if (pool !== undefined) {
      // A full queue slows the channel down rather than failing it, and what a closed stream
      // left queued is dropped: no RSA work for a connection that is gone.
      const cancel = new AbortController()
      // One listener a message in flight: as many as `concurrency`, not a leak.
      setMaxListeners(0, cancel.signal)
      const settings = { ...options, waitForRoom: true, signal: cancel.signal }
      // Several messages a worker in flight, so that one busy channel keeps every worker busy
      // and its messages go in batches (one at a time, a pooled channel ran at 0.7× inline);
      // sixteen at most, as each may be a frame of maxFrameLength.
      const concurrency = Math.min(4 * pool.workers, MAX_POOLED_IN_FLIGHT)
      const cipher = new RsaCipher((ciphertext) => pool.decrypt(key, ciphertext, settings), { ...options, concurrency })
      cipher.once('close', () => { cancel.abort() })
      return cipher
    }
    return new RsaCipher((ciphertext) => decryptWith(key, engine, ciphertext, options), options)
  }
}
