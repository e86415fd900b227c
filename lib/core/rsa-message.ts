/**
 * RSAES-PKCS1-v1_5 for P2SN messages, as plain synchronous functions: no streams, pools or
 * timers. The stream layer (`rsa-cipher.ts`), the worker threads (`rsa-worker.ts`, `rsa-pool.ts`)
 * and the channel all build on these, so that each rule is written once.
 *
 * A message of at most k − 11 bytes is one k-byte block, exactly as Python's `rsa.encrypt`
 * makes it. A longer message is this project's extension: its (k − 11)-byte pieces encrypted
 * one by one and concatenated in one frame, up to `maxMessageBlocks` blocks. Decryption uses
 * implicit rejection unless told otherwise.
 * @module
 */
import crypto from 'node:crypto'
import { checkLimit, toBuffer } from '../arguments.js'
import { P2snError } from '../errors.js'
import { encodes, unpadImplicit } from '../implicit-rejection.js'
import { toPrivateKey, toPublicKey, type PrivateKey, type PrivateKeyInput, type PublicKey, type PublicKeyInput } from '../keys.js'
import { DEFAULT_MAX_MESSAGE_BLOCKS } from '../protocol.js'
import { engineFailure, resolveEngine, type EngineName, type RsaEngine } from '../rsa-engine.js'

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
   * derived from the ciphertext and the key, the same every time, with no error and no branch
   * on the padding, so that no one learns from the answer whether the padding was good (the
   * time is measured by `npm run timing`, not promised: JavaScript gives no hard constant-time
   * guarantee; see SECURITY.md). `'error'`: throw
   * `ERR_P2SN_DECRYPT`. Riskier: whoever sees that error, or what you do because of it, holds a
   * padding oracle (Bleichenbacher 1998, the Marvin attack) that can decrypt recorded traffic.
   */
  rejection?: 'implicit' | 'error'
  /**
   * The most RSA blocks one message may have. A longer ciphertext is refused with
   * `ERR_P2SN_MESSAGE_TOO_LONG` before any of it is decrypted: each block costs a private-key
   * operation (about 1 ms at 2048 bits, 6 ms at 4096), so this bounds the CPU one message of a
   * peer can claim. A whole number of at least 1, or `Infinity`. Default
   * {@link DEFAULT_MAX_MESSAGE_BLOCKS} (32: 7,840 bytes of plaintext at 2048 bits). With
   * `strict`, one whatever this says.
   */
  maxMessageBlocks?: number
}

/**
 * Encrypts one message to a public key.
 *
 * @returns one k-byte block per k − 11 bytes of message (one block for an empty message)
 * @throws P2snError `ERR_P2SN_MESSAGE_TOO_LONG` when `strict` and the message needs more than one block
 */
export function encryptMessage (publicKey: PublicKeyInput, message: Uint8Array | string, options: EncryptOptions = {}): Buffer {
  return encryptTo(toPublicKey(publicKey), resolveEngine(options.engine), toBuffer(message), options)
}

/**
 * {@link encryptMessage} for callers that have already read the key and chosen the engine
 * (streams and channels do it once, not per message). Only `options.strict` is read here.
 * @throws P2snError `ERR_P2SN_MESSAGE_TOO_LONG` when `strict` and the message needs more than one block
 */
export function encryptTo (key: PublicKey, engine: RsaEngine, plaintext: Buffer, options: EncryptOptions): Buffer {
  const room = key.maxBlockPlaintext
  // The standard's case, and nearly every message: one block, no copy.
  if (plaintext.length <= room) return encryptBlock(key, engine, plaintext)
  if (options.strict === true) {
    throw new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', `a ${plaintext.length}-byte message does not fit one rsa block of ${room} bytes; send shorter messages or turn off strict to use multi-block messages`)
  }
  const blocks = Math.ceil(plaintext.length / room)
  const out = Buffer.allocUnsafe(blocks * key.size)
  for (let i = 0; i < blocks; i++) {
    encryptBlock(key, engine, plaintext.subarray(i * room, (i + 1) * room)).copy(out, i * key.size)
  }
  return out
}

/** One block, an engine's failure reported as this side's (`ERR_P2SN_ENGINE`). */
function encryptBlock (key: PublicKey, engine: RsaEngine, plaintext: Buffer): Buffer {
  try {
    return engine.encryptBlock(key, plaintext)
  } catch (err) {
    throw engineFailure(engine, 'encrypt', err)
  }
}

/**
 * Decrypts one message with a private key, all of its blocks in this one synchronous call (up
 * to `maxMessageBlocks` private-key operations). Streams, channels and pools do not hold the
 * event loop that long: they decrypt a longer message a block per turn, or in workers.
 *
 * @throws P2snError `ERR_P2SN_BAD_CIPHERTEXT` when the length is not a multiple of k or a block
 *   is not below the modulus (public facts, so no oracle); `ERR_P2SN_MESSAGE_TOO_LONG` when
 *   there are more blocks than `maxMessageBlocks`, or than one with `strict`; both before any
 *   block is decrypted. `ERR_P2SN_DECRYPT` only with `rejection: 'error'`;
 *   `ERR_P2SN_INVALID_ARGUMENT` for a bad `maxMessageBlocks`
 */
export function decryptMessage (privateKey: PrivateKeyInput, ciphertext: Uint8Array, options: DecryptOptions = {}): Buffer {
  const key = toPrivateKey(privateKey)
  const engine = resolveEngine(options.engine)
  const bytes = toBuffer(ciphertext)
  const blocks = countBlocks(key, bytes, blockLimit(options), options.strict === true)
  const parts: Buffer[] = []
  let valid = 1
  for (let i = 0; i < blocks; i++) valid &= decryptBlock(key, engine, bytes, i, parts, options.rejection)
  return joinBlocks(parts, valid, options.rejection)
}

/**
 * Whether a one-block ciphertext decrypts to exactly `expected`, as the handshake's key check
 * asks, and nothing else of the block. Where the engine does implicit rejection itself, its
 * message is compared with `expected` in constant time; otherwise the raw block is compared
 * with the encoding of `expected` (see `encodes`), with none of our implicit rejection's HMACs
 * (about 25 µs a block on Node 20) and the same answer.
 *
 * @throws P2snError as {@link decryptMessage} with `strict` does (`ERR_P2SN_BAD_CIPHERTEXT`,
 *   `ERR_P2SN_MESSAGE_TOO_LONG`, `ERR_P2SN_ENGINE`), never for a block that is merely not `expected`
 */
export function decryptsTo (key: PrivateKey, ciphertext: Buffer, expected: Uint8Array, engine: RsaEngine): boolean {
  countBlocks(key, ciphertext, 1, true)
  try {
    // As decryptBlock does: an engine that rejects implicitly itself is asked that way first.
    const native = engine.decryptImplicit?.(key, ciphertext)
    if (native !== undefined) return native.length === expected.length && crypto.timingSafeEqual(native, expected)
    return encodes(engine.decryptRaw(key, ciphertext), expected)
  } catch (err) {
    throw engineFailure(engine, 'decrypt', err)
  }
}

/**
 * The most blocks `options` let one message have: `maxMessageBlocks`, or one with `strict`.
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` for a bad `maxMessageBlocks`
 */
export function blockLimit (options: Pick<DecryptOptions, 'maxMessageBlocks' | 'strict'>): number {
  // Checked even with strict, so that a bad value is reported whatever else is set.
  const limit = checkLimit('maxMessageBlocks', options.maxMessageBlocks, DEFAULT_MAX_MESSAGE_BLOCKS, 1)
  return options.strict === true ? 1 : limit
}

/**
 * Checks what anyone can see of a ciphertext, before any private-key operation: whole k-byte
 * blocks, no more of them than `most` (see {@link blockLimit}), each below the modulus.
 * @param strict - `most` is one because of `strict`, for the message
 * @returns the number of blocks
 * @throws P2snError as {@link decryptMessage} does, but never `ERR_P2SN_DECRYPT`
 */
export function countBlocks (key: PrivateKey, ciphertext: Buffer, most: number, strict: boolean): number {
  const k = key.size
  const blocks = ciphertext.length / k
  if (ciphertext.length === 0 || !Number.isInteger(blocks)) {
    throw new P2snError('ERR_P2SN_BAD_CIPHERTEXT', `a ${ciphertext.length}-byte ciphertext is not made of ${k}-byte rsa blocks; the peer encrypted to another key or the data was damaged`)
  }
  if (blocks > most) {
    throw strict
      ? new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', `the ciphertext holds ${blocks} rsa blocks and strict allows one; turn off strict to accept multi-block messages`)
      : new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', `the ciphertext holds ${blocks} rsa blocks, more than maxMessageBlocks (${most}) allows; raise maxMessageBlocks on the receiver, or send shorter messages`)
  }
  // A block at or above the modulus is no RSA ciphertext at all; the modulus is public, so
  // refusing it here tells nobody anything about the key.
  const modulus = key.publicKey.numbers.n
  for (let i = 0; i < blocks; i++) {
    if (ciphertext.compare(modulus, 0, modulus.length, i * k, (i + 1) * k) >= 0) {
      throw new P2snError('ERR_P2SN_BAD_CIPHERTEXT', 'an rsa block is not below the modulus; the peer encrypted to another key or the data was damaged')
    }
  }
  return blocks
}

/**
 * Decrypts block `index` of a ciphertext already checked by {@link countBlocks}, with implicit
 * rejection (the engine's own where it has one: {@link RsaEngine.decryptImplicit}), and appends
 * its plaintext to `parts`. One private-key operation: callers that spread a message over turns
 * of the event loop call it once a block.
 * @param rejection - the caller's option: only `'error'` needs the validity, so only then is
 *   the engine's own rejection (which gives none) passed over
 * @returns 1 if its padding was good, else 0 (always 1 from the engine's own rejection): fold
 *   it with `&` and hand it to {@link joinBlocks}, never branch on it (a branch per block
 *   would time the padding)
 */
export function decryptBlock (key: PrivateKey, engine: RsaEngine, ciphertext: Buffer, index: number, parts: Buffer[], rejection: DecryptOptions['rejection']): number {
  const k = key.size
  const block = ciphertext.subarray(index * k, (index + 1) * k)
  try {
    const native = rejection === 'error' ? undefined : engine.decryptImplicit?.(key, block)
    if (native !== undefined) {
      parts.push(native)
      return 1
    }
    const { message, valid } = unpadImplicit(engine.decryptRaw(key, block), block, key.rejectionKey)
    parts.push(message)
    return valid
  } catch (err) {
    throw engineFailure(engine, 'decrypt', err)
  }
}

/**
 * The message from its blocks' plaintexts (from {@link decryptBlock}, in order). With
 * `rejection: 'error'`, one error for any bad block, once all of them are done, so that the
 * time taken does not say which block was bad.
 * @param valid - the `&` of every block's validity
 * @throws P2snError `ERR_P2SN_DECRYPT` with `rejection: 'error'` when `valid` is 0
 */
export function joinBlocks (parts: Buffer[], valid: number, rejection: DecryptOptions['rejection']): Buffer {
  if (rejection === 'error' && valid === 0) {
    throw new P2snError('ERR_P2SN_DECRYPT', 'could not decrypt the message; it was not encrypted to this key or was damaged')
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}
