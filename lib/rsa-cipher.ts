/**
 * RSAES-PKCS1-v1_5 for P2SN messages, as functions and as message streams.
 *
 * A message of at most k − 11 bytes is one k-byte block, exactly as Python's `rsa.encrypt`
 * makes it. A longer message is this project's extension: its (k − 11)-byte pieces encrypted
 * one by one and concatenated in one frame, up to `maxMessageBlocks` blocks. Decryption uses
 * implicit rejection unless told otherwise.
 * @module
 */
import { setMaxListeners } from 'node:events'
import { checkLimit, toBuffer } from './arguments.js'
import { P2snError } from './errors.js'
import { toPrivateKey, toPublicKey, type PrivateKey, type PrivateKeyInput, type PublicKey, type PublicKeyInput } from './keys.js'
import { MessageTransform, type InvalidInputOptions } from './message-transform.js'
import { unpadImplicit } from './implicit-rejection.js'
import { DEFAULT_MAX_MESSAGE_BLOCKS } from './protocol.js'
import { resolveEngine, type EngineName, type RsaEngine } from './rsa-engine.js'
import { spend, turnHasRoom, turnWithRoom } from './turn-budget.js'
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

/** Options of {@link RsaCipher.encryptor}. */
export interface EncryptorOptions extends EncryptOptions {
  /**
   * Refuse to send a message of more RSA blocks of the receiver's key than this, with
   * `ERR_P2SN_MESSAGE_TOO_LONG`, here and before encrypting it, rather than have the receiver
   * refuse it (a p2sn receiver takes {@link DEFAULT_MAX_MESSAGE_BLOCKS} by default). Channels
   * pass their own `maxMessageBlocks`: they send what they would take. Default: no limit.
   */
  maxMessageBlocks?: number
}

/** Messages one pooled decryptor may have in the pool at once, whatever the number of workers. */
const MAX_POOLED_IN_FLIGHT = 16

/** Options of {@link RsaCipher}. */
export interface RsaCipherOptions extends DecryptOptions, InvalidInputOptions {
  /**
   * Decrypt in this pool's worker threads instead of on the event loop (decryptor only), up to
   * four messages a worker at once (sixteen at most), each block of a message on its own; they
   * still come out in order. When the pool's queue is full the stream waits for room instead of
   * failing. Default: inline.
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
  for (let i = 0; i < blocks; i++) valid &= decryptBlock(key, engine, bytes, i, parts)
  return joinBlocks(parts, valid, options.rejection)
}

/**
 * The most blocks `options` let one message have: `maxMessageBlocks`, or one with `strict`.
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` for a bad `maxMessageBlocks`
 */
export function blockLimit (options: Pick<DecryptOptions, 'maxMessageBlocks' | 'strict'>): number {
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
  const modulus = key.publicKey.numbers.n
  for (let i = 0; i < blocks; i++) {
    if (ciphertext.compare(modulus, 0, modulus.length, i * k, (i + 1) * k) >= 0) {
      throw new P2snError('ERR_P2SN_BAD_CIPHERTEXT', 'an rsa block is not below the modulus; the peer encrypted to another key or the data was damaged')
    }
  }
  return blocks
}

/**
 * Decrypts block `index` of a checked ciphertext, with implicit rejection, onto `parts`.
 * @returns 1 if its padding was good, else 0 (never branched on)
 */
function decryptBlock (key: PrivateKey, engine: RsaEngine, ciphertext: Buffer, index: number, parts: Buffer[]): number {
  const k = key.size
  const block = ciphertext.subarray(index * k, (index + 1) * k)
  const { message, valid } = unpadImplicit(engine.decryptRaw(key, block), block, key.rejectionKey)
  parts.push(message)
  return valid
}

/** The message from its blocks' plaintexts; with `rejection: 'error'`, one error for any bad block, once all are done. */
function joinBlocks (parts: Buffer[], valid: number, rejection: DecryptOptions['rejection']): Buffer {
  if (rejection === 'error' && valid === 0) {
    throw new P2snError('ERR_P2SN_DECRYPT', 'could not decrypt the message; it was not encrypted to this key or was damaged')
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}

/**
 * Decrypts one message for a stream within the event loop's budget for private-key work
 * (`turn-budget.ts`, a few milliseconds a turn, shared by every stream): a message of one block
 * while the turn has room, at once, as {@link decryptMessage} does; otherwise, and for every
 * further block of a longer message, in the turns that follow, as a Promise. So a peer that
 * sends long messages, or a flood of short ones, holds the loop for a few milliseconds at a time,
 * and other connections, timers and I/O run in between. The checks of {@link countBlocks}
 * throw at once, before any block is decrypted.
 * @param signal - once aborted (the stream closed), the blocks not yet decrypted are skipped
 */
function decryptInTurns (key: PrivateKey, engine: RsaEngine, ciphertext: Buffer, most: number, options: DecryptOptions, signal: AbortSignal): Buffer | Promise<Buffer> {
  const blocks = countBlocks(key, ciphertext, most, options.strict === true)
  const parts: Buffer[] = []
  if (blocks === 1 && turnHasRoom()) return joinBlocks(parts, spend(() => decryptBlock(key, engine, ciphertext, 0, parts)), options.rejection)
  return (async () => {
    let valid = 1
    for (let i = 0; i < blocks; i++) {
      // A block a turn: the next waits in line behind what other streams asked for meanwhile.
      if (i > 0 || !turnHasRoom()) await turnWithRoom()
      if (signal.aborted) throw new P2snError('ERR_P2SN_CLOSED', 'the stream closed while a message was being decrypted')
      valid &= spend(() => decryptBlock(key, engine, ciphertext, i, parts))
    }
    return joinBlocks(parts, valid, options.rejection)
  })()
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
  static encryptor (publicKey: PublicKeyInput, options: EncryptorOptions = {}): RsaCipher {
    const key = toPublicKey(publicKey)
    const engine = resolveEngine(options.engine)
    const most = checkLimit('maxMessageBlocks', options.maxMessageBlocks, Infinity, 1)
    // With strict, encryptWith refuses anything over one block itself.
    const room = options.strict === true ? Infinity : most * key.maxBlockPlaintext
    return new RsaCipher((message) => {
      if (message.length > room) {
        const blocks = Math.ceil(message.length / key.maxBlockPlaintext)
        throw new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', `a ${message.length}-byte message takes ${blocks} rsa blocks of the receiver's key, more than maxMessageBlocks (${most}) lets it take; send shorter messages, or raise maxMessageBlocks on both sides`)
      }
      return encryptWith(key, engine, message, options)
    })
  }

  /**
   * Decrypts each ciphertext written to it with `privateKey`. A message of one block is
   * decrypted at once; a longer one a block per turn of the event loop, or in the pool's workers,
   * so that no message holds the event loop for more than one block. A ciphertext of more than
   * `maxMessageBlocks` blocks fails with `ERR_P2SN_MESSAGE_TOO_LONG` (or goes to `onInvalid`)
   * before any of it is decrypted.
   * @param privateKey - a private key, a key pair, or PEM text
   * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` for a bad engine or `maxMessageBlocks`
   */
  static decryptor (privateKey: PrivateKeyInput, options: RsaCipherOptions = {}): RsaCipher {
    const key = toPrivateKey(privateKey)
    const engine = resolveEngine(options.engine)
    const most = blockLimit(options)
    const { pool } = options
    // What a closed stream left undone is dropped: no RSA work for a connection that is gone.
    const cancel = new AbortController()
    let cipher: RsaCipher
    if (pool === undefined) {
      cipher = new RsaCipher((ciphertext) => decryptInTurns(key, engine, ciphertext, most, options, cancel.signal), options)
    } else {
      // A full queue slows the channel down rather than failing it.
      const settings = { ...options, waitForRoom: true, signal: cancel.signal }
      // One listener a message in flight: as many as `concurrency`, not a leak.
      setMaxListeners(0, cancel.signal)
      // Several messages a worker in flight, so that one busy channel keeps every worker busy
      // and its messages go in batches (one at a time, a pooled channel ran at 0.7× inline);
      // sixteen at most, as each may be a frame of maxFrameLength.
      const concurrency = Math.min(4 * pool.workers, MAX_POOLED_IN_FLIGHT)
      cipher = new RsaCipher((ciphertext) => pool.decrypt(key, ciphertext, settings), { ...options, concurrency })
    }
    cipher.once('close', () => { cancel.abort() })
    return cipher
  }
}
