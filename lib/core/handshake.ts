/**
 * The six-step P2SN handshake as a state machine per role, with no streams, timers or sockets:
 * it is fed frames, and the result of the one private-key operation it asks for, and says what
 * to send, what to decrypt, when the peer's key is there to be judged, and when it is done.
 *
 * | # | sender | frame                                         |
 * |---|--------|-----------------------------------------------|
 * | 1 | client | `P2SN:PUBKEY`                                 |
 * | 2 | server | its public key PEM, Base64 or raw             |
 * | 3 | client | Base64(RSA(`P2SN:KEYCHECK`, server key))      |
 * | 4 | server | `P2SN:PUBKEY`                                 |
 * | 5 | client | Base64(its public key PEM)                    |
 * | 6 | server | Base64(RSA(`P2SN:KEYCHECK`, client key))      |
 *
 * The key checks catch a key damaged or misread on the way; they prove nobody's key. The server
 * answers step 3 with a plain `P2SN:PUBKEY` that anyone can send, and anyone who has the
 * client's public key can make step 6. So the keys swapped here are claims, until a layer below
 * proves them.
 * @module
 */
import crypto from 'node:crypto'
import { P2snError } from '../errors.js'
import { parsePublicKey, type KeyPair, type PrivateKey, type PublicKey } from '../keys.js'
import { KEYWORD_ERRORKEY, KEYWORD_KEYCHECK, KEYWORD_PUBKEY, MAX_HANDSHAKE_FRAME_LENGTH } from '../protocol.js'
import type { EngineName, RsaEngine } from '../rsa-engine.js'
import { decodeBase64, encodeBase64 } from './base64.js'
import { decryptsTo, encryptMessage } from './rsa-message.js'

/** Which end of the handshake this side plays: the client connected, the server accepted. */
export type Role = 'client' | 'server'

/** How a server sends its key at step 2: `'base64'` as the standard says, `'pem'` as the Python reference does. */
export type ServerKeyEncoding = 'base64' | 'pem'

/** Names of the frames, for tracing. */
export type FrameStep = 'PUBKEY' | 'server key' | 'client key' | 'KEYCHECK' | 'ERRORKEY' | 'message' | 'END'

/** A frame to send, and what it is. */
export interface OutgoingFrame {
  frame: Buffer
  step: FrameStep
}

/**
 * What the machine wants done after a call. Send `send` in order; then at most one of: decrypt
 * `decrypt` with this side's private key and pass the plaintext to
 * {@link HandshakeMachine.keyChecked}; judge the peer's key `verify` and call
 * {@link HandshakeMachine.accepted}; or, with `done`, the handshake is over and that is the
 * peer's key. With none of them, feed the next frame ({@link HandshakeMachine.expecting}).
 */
export interface HandshakeOutput {
  send: OutgoingFrame[]
  decrypt?: Buffer
  verify?: PublicKey
  done?: PublicKey
}

/** Options of {@link HandshakeMachine}. */
export interface HandshakeMachineOptions {
  /** How a server sends its key at step 2. Default `'base64'`. */
  serverKeyEncoding?: ServerKeyEncoding
  /** RSA engine for the key check it encrypts. Default `'openssl'`. */
  engine?: EngineName | RsaEngine
}

export const PUBKEY = Buffer.from(KEYWORD_PUBKEY)
export const ERRORKEY = Buffer.from(KEYWORD_ERRORKEY)
/** The key check's plaintext. */
export const KEYCHECK = Buffer.from(KEYWORD_KEYCHECK)
/** What {@link openKeyCheck} gives for any block that is not P2SN:KEYCHECK well padded. */
const NOT_KEYCHECK = Buffer.alloc(0)

/**
 * Opens a key check for {@link HandshakeMachine.keyChecked}: `P2SN:KEYCHECK` when the block is
 * exactly its well-padded encoding, else no bytes. Only that question is asked (see
 * `decryptsTo`), so no synthetic message is made; the inline path and the pool's workers both
 * call this.
 * @throws P2snError as `decryptsTo` does, for what goes to {@link HandshakeMachine.keyCheckFailed}
 */
export function openKeyCheck (key: PrivateKey, ciphertext: Buffer, engine: RsaEngine): Buffer {
  return decryptsTo(key, ciphertext, KEYCHECK, engine) ? KEYCHECK : NOT_KEYCHECK
}

const PEM_START = Buffer.from('-----BEGIN')

/** Errors that the standard wants answered with `P2SN:ERRORKEY` before closing. */
const answeredWithErrorKey = new WeakSet<Error>()

/** True when the standard wants `error` answered with `P2SN:ERRORKEY` before closing. */
export function answersWithErrorKey (error: Error): boolean {
  return answeredWithErrorKey.has(error)
}

/** Marks `error` as one to answer with `P2SN:ERRORKEY`, and returns it. */
export function refusal<E extends Error> (error: E): E {
  answeredWithErrorKey.add(error)
  return error
}

/** Checks a handshake's role, so that streams and channels can refuse a bad one before they open anything. */
export function checkRole (role: unknown): asserts role is Role {
  if (role !== 'client' && role !== 'server') {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `role must be 'client' or 'server', not ${String(role)}`)
  }
}

/** The error for a `P2SN:ERRORKEY` received. */
export function errorKeyReceived (): P2snError {
  return new P2snError('ERR_P2SN_ERRORKEY', 'the peer answered P2SN:ERRORKEY: it could not read our key or a message; check that both sides use valid keys and the same protocol')
}

/** What the machine waits for. */
type Waiting = 'start' | 'frame' | 'keycheck' | 'verdict' | 'done' | 'failed'

/** A server's step 2 frames, made once per key: a server sends the same to every client. */
const keyFrames = new WeakMap<PublicKey, { pem: Buffer, base64: Buffer }>()

function keyFramesOf (key: PublicKey): { pem: Buffer, base64: Buffer } {
  let frames = keyFrames.get(key)
  if (frames === undefined) {
    const pem = Buffer.from(key.toPem(), 'latin1')
    frames = { pem, base64: encodeBase64(pem) }
    keyFrames.set(key, frames)
  }
  return frames
}

/**
 * One side's handshake. Call {@link start} once, then feed each frame received with
 * {@link receive} while {@link expecting} names one, and answer what the outputs ask. A method
 * throws a `P2snError` when the peer fails the handshake, and the machine is spent then;
 * {@link answersWithErrorKey} says whether the standard wants the peer told with
 * `P2SN:ERRORKEY`. A call out of turn (a caller's mistake, not the peer's) throws
 * `ERR_P2SN_INVALID_ARGUMENT` and changes nothing.
 */
export class HandshakeMachine {
  /** This side's role. */
  readonly role: Role
  readonly #keys: KeyPair
  readonly #encoding: ServerKeyEncoding
  readonly #engine: EngineName | RsaEngine | undefined
  /** Protocol step (1–6) of the frame awaited or last handled. */
  #step = 0
  #waiting: Waiting = 'start'
  #peerKey: PublicKey | undefined

  constructor (role: Role, keys: KeyPair, options: HandshakeMachineOptions = {}) {
    checkRole(role)
    this.role = role
    this.#keys = keys
    this.#encoding = options.serverKeyEncoding ?? 'base64'
    this.#engine = options.engine
  }

  /** The frame awaited, or undefined while the machine waits for its caller or is done. */
  get expecting (): FrameStep | undefined {
    if (this.#waiting !== 'frame') return undefined
    return stepName(this.#step)
  }

  /** The step awaited or under way, for messages ("waiting for …"). */
  get step (): FrameStep {
    return stepName(this.#step)
  }

  /** True once the six steps have checked out. */
  get done (): boolean {
    return this.#waiting === 'done'
  }

  /** Opens the handshake, once: the client sends step 1, the server waits for it. */
  start (): HandshakeOutput {
    this.#expectWaiting('start')
    if (this.role === 'server') {
      this.#expect(1)
      return { send: [] }
    }
    this.#expect(2)
    return { send: [{ frame: PUBKEY, step: 'PUBKEY' }] }
  }

  /** A frame received while {@link expecting} names one. */
  receive (frame: Buffer): HandshakeOutput {
    if (this.#waiting !== 'frame') throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'the handshake takes no frame now; start it first, or hold the frame until the output asked for is done')
    this.#waiting = 'failed'
    if (frame.equals(ERRORKEY)) throw errorKeyReceived()
    if (frame.length > MAX_HANDSHAKE_FRAME_LENGTH) {
      throw new P2snError('ERR_P2SN_FRAME_TOO_LONG', `a handshake frame of ${frame.length} bytes is longer than the ${MAX_HANDSHAKE_FRAME_LENGTH} allowed; the peer does not speak p2sn`)
    }
    switch (this.#step) {
      // Server, step 1: the client asks for our key; step 2 sends it.
      case 1: {
        // A TLS record (handshake, version 3.x) where P2SN:PUBKEY should be: a client of the authenticated mode.
        if (frame[0] === 0x16 && frame[1] === 0x03) {
          throw new P2snError('ERR_P2SN_PROTOCOL', 'the client opened with a tls handshake instead of P2SN:PUBKEY: it runs the authenticated mode, which this side does not; turn on authenticate (p2sn listen --auth) on both sides')
        }
        expectKeyword(frame, PUBKEY, 1)
        const key = keyFramesOf(this.#keys.publicKey)
        this.#expect(3)
        return { send: [{ frame: this.#encoding === 'pem' ? key.pem : key.base64, step: 'server key' }] }
      }
      // Client, step 2: the server's key, to be judged before step 3 encrypts to it.
      case 2:
        return this.#judge(readPeerKey(frame))
      // Server, step 3: the client's key check, to decrypt.
      case 3:
        return this.#decrypt(frame)
      // Client, step 4: the server asks for our key; step 5 sends it.
      case 4:
        expectKeyword(frame, PUBKEY, 4)
        this.#expect(6)
        return { send: [{ frame: keyFramesOf(this.#keys.publicKey).base64, step: 'client key' }] }
      // Server, step 5: the client's key, to be judged before step 6 encrypts to it.
      case 5:
        return this.#judge(readPeerKey(frame))
      // Client, step 6: the server's key check, to decrypt.
      default:
        return this.#decrypt(frame)
    }
  }

  /**
   * The plaintext of the key check asked for in `decrypt` (decrypted strictly: one block). An
   * error from that decryption goes to {@link keyCheckFailed} instead.
   */
  keyChecked (plaintext: Buffer): HandshakeOutput {
    this.#expectWaiting('keycheck')
    this.#waiting = 'failed'
    if (plaintext.length !== KEYCHECK.length || !crypto.timingSafeEqual(plaintext, KEYCHECK)) {
      throw refusal(new P2snError('ERR_P2SN_BAD_KEYCHECK', 'the peer\'s key check did not decrypt to P2SN:KEYCHECK; it encrypted to another key'))
    }
    // Client, after step 6: done.
    if (this.role === 'client') return this.#finish([])
    // Server, after step 3: step 4 asks for the client's key.
    this.#expect(5)
    return { send: [{ frame: PUBKEY, step: 'PUBKEY' }] }
  }

  /** The key check's ciphertext could not be decrypted: always throws, as a refusal. */
  keyCheckFailed (cause: unknown): never {
    this.#expectWaiting('keycheck')
    this.#waiting = 'failed'
    throw refusal(new P2snError('ERR_P2SN_BAD_KEYCHECK', 'the peer\'s key check could not be decrypted; it encrypted to another key or does not speak p2sn', { cause }))
  }

  /** The peer's key, asked for in `verify`, is accepted: go on. */
  accepted (): HandshakeOutput {
    this.#expectWaiting('verdict')
    this.#waiting = 'failed'
    const peer = this.#peerKey!
    const keycheck = { frame: encodeBase64(encryptMessage(peer, KEYCHECK, { strict: true, engine: this.#engine })), step: 'KEYCHECK' as const }
    // Server, step 6: the last frame.
    if (this.role === 'server') return this.#finish([keycheck])
    // Client, step 3; then the server's step 4.
    this.#expect(4)
    return { send: [keycheck] }
  }

  #expect (step: number): void {
    this.#step = step
    this.#waiting = 'frame'
  }

  #expectWaiting (waiting: Waiting): void {
    if (this.#waiting !== waiting) throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `the handshake did not ask for this (it waits for ${this.#waiting})`)
  }

  #judge (peer: PublicKey): HandshakeOutput {
    this.#peerKey = peer
    this.#waiting = 'verdict'
    return { send: [], verify: peer }
  }

  #decrypt (frame: Buffer): HandshakeOutput {
    let ciphertext: Buffer
    try {
      ciphertext = decodeBase64(frame)
    } catch (err) {
      throw refusal(new P2snError('ERR_P2SN_BAD_KEYCHECK', 'the peer\'s key check could not be decrypted; it encrypted to another key or does not speak p2sn', { cause: err }))
    }
    this.#waiting = 'keycheck'
    return { send: [], decrypt: ciphertext }
  }

  #finish (send: OutgoingFrame[]): HandshakeOutput {
    this.#waiting = 'done'
    return { send, done: this.#peerKey! }
  }
}

function stepName (step: number): FrameStep {
  switch (step) {
    case 2: return 'server key'
    case 3: case 6: return 'KEYCHECK'
    case 5: return 'client key'
    default: return 'PUBKEY'
  }
}

/**
 * How many peer keys, read lately, are kept by the frame they came in. A client that
 * reconnects, and the server it reconnects to, each read the other's key once, not at every
 * handshake (reading PEM into OpenSSL, the DER, the fingerprint), and the same key object keeps
 * OpenSSL's per-key setup for the key check encrypted to it. A key is kept whole and never
 * changes, so a frame of the same bytes gets the same key; a peer that sends a new key each
 * time only turns the cache over.
 */
const MAX_RECENT_PEER_KEYS = 64
const recentPeerKeys = new Map<string, PublicKey>()

/**
 * The peer's public key from a step 2 or 5 frame, raw PEM or Base64 PEM. A key that cannot be
 * read at all fails with `ERR_P2SN_BAD_KEY` (even when it is not Base64 either); a key that can
 * be read but breaks the size or exponent rules keeps its own code. Both are refusals.
 */
function readPeerKey (frame: Buffer): PublicKey {
  const id = frame.toString('latin1')
  const known = recentPeerKeys.get(id)
  if (known !== undefined) {
    // Most recently used last: the oldest goes first when the cache is full.
    recentPeerKeys.delete(id)
    recentPeerKeys.set(id, known)
    return known
  }
  try {
    const key = parsePublicKey(startsWith(frame, PEM_START) ? frame : decodeBase64(frame))
    recentPeerKeys.set(id, key)
    if (recentPeerKeys.size > MAX_RECENT_PEER_KEYS) recentPeerKeys.delete(recentPeerKeys.keys().next().value!)
    return key
  } catch (err) {
    const readable = err instanceof P2snError && err.code !== 'ERR_P2SN_BAD_BASE64'
    throw refusal(readable ? err : new P2snError('ERR_P2SN_BAD_KEY', 'the peer sent a public key that could not be read (neither pem nor base64 of pem); it does not speak p2sn', { cause: err }))
  }
}

function expectKeyword (frame: Buffer, keyword: Buffer, step: number): void {
  if (!frame.equals(keyword)) {
    throw new P2snError('ERR_P2SN_PROTOCOL', `expected ${keyword.toString()} at handshake step ${step} but got ${frame.length} other bytes; the peer does not speak p2sn or plays the same role`)
  }
}

function startsWith (frame: Buffer, prefix: Buffer): boolean {
  return frame.length >= prefix.length && frame.subarray(0, prefix.length).equals(prefix)
}
