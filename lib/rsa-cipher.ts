/**
 * RSA message streams: a stream shell over `core/rsa-message.ts`, plus the two pieces a stream
 * or a channel needs around it: {@link messageEncryptor} (the sender's block limit) and
 * {@link messageDecryptor} (the event loop's turn budget, or a worker pool, and cancellation).
 *
 * The pure functions are re-exported here for those who import them from this module.
 * @module
 */
import { setMaxListeners } from 'node:events'
import { checkLimit, type EveryOption } from './arguments.js'
import { P2snError } from './errors.js'
import { toPrivateKey, toPublicKey, type PrivateKey, type PrivateKeyInput, type PublicKeyInput } from './keys.js'
import { MessageTransform, type InvalidInputOptions } from './message-transform.js'
import { resolveEngine, type RsaEngine } from './rsa-engine.js'
import { spend, turnHasRoom, turnWithRoom } from './turn-budget.js'
import {
  blockLimit, countBlocks, decryptBlock, encryptTo, joinBlocks,
  type DecryptOptions, type EncryptOptions
} from './core/rsa-message.js'
// A type only: the pool imports the core, never this module, so no import cycle runs through here.
import type { PoolDecryptOptions, RsaPool } from './rsa-pool.js'

export { blockLimit, countBlocks, decryptMessage, encryptMessage, type DecryptOptions, type EncryptOptions } from './core/rsa-message.js'

/** Options of {@link RsaCipher.encryptor} and of `messageEncryptor`. */
export interface EncryptorOptions extends EncryptOptions {
  /**
   * Refuse to send a message of more RSA blocks of the receiver's key than this, with
   * `ERR_P2SN_MESSAGE_TOO_LONG`, here and before encrypting it, rather than have the receiver
   * refuse it (a p2sn receiver takes `DEFAULT_MAX_MESSAGE_BLOCKS` by default). Channels
   * pass their own `maxMessageBlocks`: they send what they would take. Default: no limit.
   */
  maxMessageBlocks?: number
}

/** Messages one pooled decryptor may have in the pool at once, whatever the number of workers. */
const MAX_POOLED_IN_FLIGHT = 16

/** Options of {@link RsaCipher.decryptor} and of `messageDecryptor`. */
export interface RsaCipherOptions extends DecryptOptions, InvalidInputOptions {
  /**
   * Decrypt in this pool's worker threads instead of on the event loop (decryptor only), up to
   * four messages a worker at once (sixteen at most), each block of a message on its own; they
   * still come out in order. When the pool's queue is full the stream waits for room instead of
   * failing. Default: inline.
   */
  pool?: RsaPool
}

/** What {@link messageDecryptor} makes: the decryption of one stream's or channel's messages. */
export interface MessageDecryptor {
  /**
   * Decrypts one ciphertext: at once (a one-block message while the turn has room), or as a
   * Promise. The checks anyone can see (length, block count, modulus) throw at once inline, and
   * reject the Promise in a pool.
   */
  decrypt: (ciphertext: Buffer) => Buffer | Promise<Buffer>
  /**
   * How many messages may be in flight at once, their results put back in order by the caller:
   * 1 inline, `min(4 × pool.workers, 16)` in a pool.
   */
  concurrency: number
  /**
   * Drops the work not yet started (call it when the stream or channel closes): blocks still
   * waiting for a turn or for a worker are never decrypted, and their Promises reject with
   * `ERR_P2SN_CLOSED`. Blocks already running finish.
   */
  cancel: () => void
}

/**
 * Encrypts messages to `publicKey` for a stream or a channel: the `maxMessageBlocks` check of
 * {@link EncryptorOptions} (before any RSA work), then the message's blocks. The key, engine
 * and limit are read and checked here, once, not per message.
 * @param publicKey - a public key, a key pair, or PEM text
 * @returns a function from one message to its ciphertext, which throws `ERR_P2SN_MESSAGE_TOO_LONG`
 *   for a message over `maxMessageBlocks` blocks, or over one block with `strict`
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` for a bad key, engine or `maxMessageBlocks`
 */
export function messageEncryptor (publicKey: PublicKeyInput, options: EncryptorOptions = {}): (message: Buffer) => Buffer {
  const key = toPublicKey(publicKey)
  const engine = resolveEngine(options.engine)
  const most = checkLimit('maxMessageBlocks', options.maxMessageBlocks, Infinity, 1)
  // With strict, encryptTo refuses anything over one block itself, with its own words.
  const room = options.strict === true ? Infinity : most * key.maxBlockPlaintext
  return (message) => {
    if (message.length > room) {
      const blocks = Math.ceil(message.length / key.maxBlockPlaintext)
      throw new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', `a ${message.length}-byte message takes ${blocks} rsa blocks of the receiver's key, more than maxMessageBlocks (${most}) lets it take; send shorter messages, or raise maxMessageBlocks on both sides`)
    }
    return encryptTo(key, engine, message, options)
  }
}

/**
 * Decrypts messages for a stream or a channel: inline, within the event loop's budget for
 * private-key work (see `decryptInTurns`), or in `options.pool`, where a full queue makes it
 * wait for room rather than fail. The key, engine and `maxMessageBlocks` are read and checked
 * here, once.
 * @param privateKey - a private key, a key pair, or PEM text
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` for a bad key, engine or `maxMessageBlocks`
 */
export function messageDecryptor (privateKey: PrivateKeyInput, options: RsaCipherOptions = {}): MessageDecryptor {
  const key = toPrivateKey(privateKey)
  const engine = resolveEngine(options.engine)
  const most = blockLimit(options)
  const { pool } = options
  if (pool === undefined) {
    // A flag, not an AbortController: a server holds one of these per idle channel.
    const cancelled = { aborted: false }
    return { decrypt: (ciphertext) => decryptInTurns(key, engine, ciphertext, most, options, cancelled), concurrency: 1, cancel: () => { cancelled.aborted = true } }
  }
  const cancelling = new AbortController()
  const { signal } = cancelling
  const cancel = (): void => { cancelling.abort() }
  // A full queue slows the channel down rather than failing it.
  // Copied by name, not spread (see EveryOption): every message of the channel reads it.
  const settings: EveryOption<PoolDecryptOptions> = {
    engine: options.engine,
    strict: options.strict,
    rejection: options.rejection,
    maxMessageBlocks: options.maxMessageBlocks,
    waitForRoom: true,
    signal,
    urgent: false,
    keyCheck: false
  }
  // One abort listener a message in flight: as many as `concurrency`, not a leak.
  setMaxListeners(0, signal)
  // Several messages a worker in flight, so that one busy channel keeps every worker busy and
  // its messages go in batches (one at a time, a pooled channel ran at 0.7× inline); sixteen at
  // most, as each may be a frame of maxFrameLength.
  const concurrency = Math.min(4 * pool.workers, MAX_POOLED_IN_FLIGHT)
  return { decrypt: (ciphertext) => pool.decrypt(key, ciphertext, settings), concurrency, cancel }
}

/**
 * Decrypts one message for a stream within the event loop's budget for private-key work
 * (`turn-budget.ts`, a few milliseconds a turn, shared by every stream): a message of one block
 * while the turn has room, at once, as `decryptMessage` does; otherwise, and for every
 * further block of a longer message, in the turns that follow, as a Promise. So a peer that
 * sends long messages, or a flood of short ones, holds the loop for a few milliseconds at a time,
 * and other connections, timers and I/O run in between. The checks of `countBlocks`
 * throw at once, before any block is decrypted.
 * @param signal - once aborted (the stream closed), the blocks not yet decrypted are skipped
 */
function decryptInTurns (key: PrivateKey, engine: RsaEngine, ciphertext: Buffer, most: number, options: DecryptOptions, signal: { readonly aborted: boolean }): Buffer | Promise<Buffer> {
  const blocks = countBlocks(key, ciphertext, most, options.strict === true)
  const parts: Buffer[] = []
  if (blocks === 1 && turnHasRoom()) return joinBlocks(parts, spend(() => decryptBlock(key, engine, ciphertext, 0, parts, options.rejection)), options.rejection)
  return (async () => {
    let valid = 1
    for (let i = 0; i < blocks; i++) {
      // A block a turn: the next waits in line behind what other streams asked for meanwhile.
      if (i > 0 || !turnHasRoom()) await turnWithRoom()
      if (signal.aborted) throw new P2snError('ERR_P2SN_CLOSED', 'the stream closed while a message was being decrypted')
      valid &= spend(() => decryptBlock(key, engine, ciphertext, i, parts, options.rejection))
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
    return new RsaCipher(messageEncryptor(publicKey, options))
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
    const { decrypt, concurrency, cancel } = messageDecryptor(privateKey, options)
    const cipher = new RsaCipher(decrypt, { onInvalid: options.onInvalid, concurrency })
    // What a closed stream left undone is dropped: no RSA work for a connection that is gone.
    cipher.once('close', cancel)
    return cipher
  }
}
