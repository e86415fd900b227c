/**
 * The six-step P2SN handshake over a duplex of frames, after which the same duplex carries the
 * peers' message frames.
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
 * proves them (`provenPeerKey`, the authenticated mode).
 * @module
 */
import crypto, { type KeyObject } from 'node:crypto'
import { Duplex } from 'readable-stream'
import { checkLimit } from './arguments.js'
import { decodeBase64, encodeBase64 } from './base64-codec.js'
import { P2snError, toP2snError } from './errors.js'
import { generateKeyPair, parsePublicKey, toKeyPair, type KeyPair, type PrivateKeyInput, type PublicKey } from './keys.js'
import {
  DEFAULT_HANDSHAKE_TIMEOUT, KEYWORD_END, KEYWORD_ERRORKEY, KEYWORD_KEYCHECK, KEYWORD_PUBKEY, MAX_HANDSHAKE_FRAME_LENGTH, MESSAGE_HIGH_WATER_MARK
} from './protocol.js'
import { decryptMessage, encryptMessage } from './rsa-cipher.js'
import type { EngineName, RsaEngine } from './rsa-engine.js'
import { poolEngineName, type RsaPool } from './rsa-pool.js'

/** Which end of the handshake this side plays: the client connected, the server accepted. */
export type Role = 'client' | 'server'

/** How a server sends its key at step 2: `'base64'` as the standard says, `'pem'` as the Python reference does. */
export type ServerKeyEncoding = 'base64' | 'pem'

/** What {@link HandshakeDuplex} learned of the peer: the `'handshake'` event's argument and `verifyPeer`'s. */
export interface PeerInfo {
  /**
   * The public key the peer presented. In plain P2SN it is a claim, not a proof: the key checks
   * show nobody's possession of a private key, and anyone can present anyone's public key.
   * Only when `authenticated` is true has the peer proven that it holds this key's private half.
   */
  publicKey: PublicKey
  /** Its fingerprint, `SHA256:…`: as claimed, or as proven when `authenticated` is true. */
  fingerprint: string
  /** This side's role. */
  role: Role
  /**
   * True when a layer below proved that the peer holds `publicKey`'s private half: the
   * authenticated mode (mutual TLS 1.3 with certificates of the P2SN keys). False in plain
   * P2SN, where the fingerprint identifies nobody.
   */
  authenticated: boolean
}

/** Names of the frames, for tracing. */
export type FrameStep = 'PUBKEY' | 'server key' | 'client key' | 'KEYCHECK' | 'ERRORKEY' | 'message' | 'END'

/** One frame seen by {@link HandshakeOptions.trace}. */
export interface TraceEvent {
  /** `'out'`: sent by this side; `'in'`: received. */
  direction: 'in' | 'out'
  /** What the frame is. */
  step: FrameStep
  /** The frame's bytes on the wire, terminator excluded: keywords, PEM, or Base64 ciphertext. */
  frame: Buffer
}

/** Options of {@link HandshakeDuplex}. */
export interface HandshakeOptions {
  /** This side's role. */
  role: Role
  /**
   * This side's key: a key pair, a private key, its PEM, or a Promise of a key pair. Default: a
   * fresh 2048-bit pair, generated off the event loop.
   */
  keyPair?: PrivateKeyInput | Promise<KeyPair>
  /**
   * How a server sends its public key at step 2. Default `'base64'`, the standard's way; use
   * `'pem'` for the Python reference client, which reads raw PEM only. A client reads both.
   */
  serverKeyEncoding?: ServerKeyEncoding
  /** Milliseconds the whole handshake may take: `ERR_P2SN_HANDSHAKE_TIMEOUT`. Default 10000; 0 for none. */
  handshakeTimeout?: number
  /**
   * Decides whether to go on with a peer, once its key is known: return (or resolve) `false`,
   * or throw, to refuse it with `ERR_P2SN_PEER_REJECTED`. Default: every peer is accepted.
   */
  verifyPeer?: (info: PeerInfo) => boolean | undefined | Promise<boolean | undefined>
  /** RSA engine for the key checks. Default `'openssl'`. */
  engine?: EngineName | RsaEngine
  /**
   * Decrypt the peer's key check (this side's one private-key operation) in this pool's worker
   * threads instead of on the event loop. Default: inline.
   */
  pool?: RsaPool
  /** Called with every frame sent or received, handshake and messages alike. */
  trace?: (event: TraceEvent) => void
  /**
   * The key the peer proved it holds in a layer below, read when its P2SN key arrives (the
   * authenticated mode passes the key of the peer's TLS certificate, proven by TLS 1.3's
   * `CertificateVerify`). The key the peer presents must be the same, or the handshake fails
   * with `ERR_P2SN_KEY_MISMATCH` before `verifyPeer` sees it; {@link PeerInfo.authenticated} is
   * then true. Default: none, plain P2SN, and `authenticated` is false.
   */
  provenPeerKey?: () => KeyObject | undefined
}

/** The stream interface this needs of its transport: an object-mode duplex of frames. */
export interface FrameTransport {
  write (frame: Buffer): boolean
  end (frame?: Buffer | (() => void), callback?: () => void): unknown
  pause (): unknown
  resume (): unknown
  destroy (error?: Error): unknown
  on (event: string, listener: (...args: never[]) => void): unknown
  removeListener (event: string, listener: (...args: never[]) => void): unknown
}

const PUBKEY = Buffer.from(KEYWORD_PUBKEY)
const ERRORKEY = Buffer.from(KEYWORD_ERRORKEY)
const KEYCHECK = Buffer.from(KEYWORD_KEYCHECK)
const END = Buffer.from(KEYWORD_END)
const PEM_START = Buffer.from('-----BEGIN')
/** What a pool's decrypt fails with that says nothing of the ciphertext. */
const POOL_FAILURES = new Set<P2snError['code']>(['ERR_P2SN_CLOSED', 'ERR_P2SN_POOL_BUSY', 'ERR_P2SN_INVALID_ARGUMENT'])
/** How long a refusing side waits for its `P2SN:ERRORKEY` to flush before closing anyway. */
const ERRORKEY_LINGER = 1000

/** Errors that the standard wants answered with `P2SN:ERRORKEY` before closing. */
const answeredWithErrorKey = new WeakSet<Error>()

type Callback = (error?: Error | null) => void

/**
 * Runs the handshake over `transport`, an object-mode duplex of frames (such as
 * `new Pumpify.obj(new FrameJoiner(), socket, new FrameSplitter())`), then is a duplex of the
 * message frames exchanged over it: Base64 ciphertext, still to be decoded and decrypted.
 *
 * Frames written before the handshake completes are held, not lost. It emits `'handshake'`
 * with a {@link PeerInfo} when done. A `P2SN:ERRORKEY` received at any time fails it with
 * `ERR_P2SN_ERRORKEY`; a bad key check or an unreadable key is answered with `P2SN:ERRORKEY`, as
 * the standard says, before closing.
 */
export class HandshakeDuplex extends Duplex {
  /** This side's role. */
  readonly role: Role

  // Settings
  readonly #transport: FrameTransport
  readonly #serverKeyEncoding: ServerKeyEncoding
  readonly #verifyPeer: HandshakeOptions['verifyPeer']
  readonly #engine: EngineName | RsaEngine | undefined
  readonly #pool: RsaPool | undefined
  /** Cancels a key check still queued in the pool when this is destroyed: no RSA work for it. */
  readonly #cancel: AbortController | undefined
  readonly #trace: HandshakeOptions['trace']
  readonly #provenPeerKey: HandshakeOptions['provenPeerKey']
  /** A layer below proves the peer's key (the authenticated mode): `provenPeerKey` is given. */
  readonly #authenticated: boolean

  // Handshake state
  #keyPair: KeyPair | undefined
  #peer: PeerInfo | undefined
  #step: FrameStep = 'PUBKEY'
  #inbox: Buffer[] = []
  #wake: (() => void) | undefined
  #transportEnded = false
  /** The authenticated mode: the peer's `P2SN:END` came, so its end of stream is no cut. */
  #endSeen = false
  #timer: NodeJS.Timeout | undefined

  // A refusal: the reason, and the timer that closes anyway if P2SN:ERRORKEY does not flush
  #refusal: P2snError | undefined
  #linger: NodeJS.Timeout | undefined

  // Writes waiting for the handshake or for the transport to drain
  #heldWrite: { frame: Buffer, callback: Callback } | undefined
  #heldFinal: Callback | undefined
  #drainCallback: Callback | undefined

  /**
   * @param transport - an object-mode duplex of frames (terminators already removed)
   * @param options - role, key pair, and the rest of {@link HandshakeOptions}
   */
  constructor (transport: FrameTransport, options: HandshakeOptions) {
    super({ objectMode: true, highWaterMark: MESSAGE_HIGH_WATER_MARK })
    checkRole(options.role)
    const { serverKeyEncoding: encoding, handshakeTimeout: timeout } = checkHandshakeOptions(options)
    this.role = options.role
    this.#transport = transport
    this.#serverKeyEncoding = encoding
    this.#verifyPeer = options.verifyPeer
    this.#engine = options.engine
    this.#pool = options.pool
    this.#cancel = options.pool === undefined ? undefined : new AbortController()
    this.#trace = options.trace
    this.#provenPeerKey = options.provenPeerKey
    this.#authenticated = options.provenPeerKey !== undefined
    const keys = loadKeys(options.keyPair)

    transport.on('data', this.#onFrame)
    transport.on('end', this.#onEnd)
    transport.on('error', this.#onError)
    transport.on('close', this.#onClose)
    transport.on('drain', this.#onDrain)
    if (timeout > 0 && timeout !== Infinity) {
      this.#timer = setTimeout(() => {
        this.destroy(new P2snError('ERR_P2SN_HANDSHAKE_TIMEOUT', `the handshake did not complete within ${timeout} ms (waiting for ${this.#step}); the peer is slow, stalled or does not speak p2sn`))
      }, timeout)
    }
    this.#run(keys).then(
      (peer) => { this.#complete(peer) },
      (err: unknown) => { this.#fail(err) }
    )
  }

  /** The peer's public key, once the handshake is done. */
  get remotePublicKey (): PublicKey | undefined {
    return this.#peer?.publicKey
  }

  /** The peer's fingerprint, once the handshake is done. */
  get remoteFingerprint (): string | undefined {
    return this.#peer?.fingerprint
  }

  /** This side's key pair, once loaded or generated. */
  get keyPair (): KeyPair | undefined {
    return this.#keyPair
  }

  /** True once the six steps have checked out. */
  get handshakeComplete (): boolean {
    return this.#peer !== undefined
  }

  /**
   * Refuses the peer as the standard says: sends `P2SN:ERRORKEY` in plain after the frames
   * already written, takes no more frames from the transport, and fails with `error` once that
   * is flushed (or after a second). Frames it had already passed on (one per stage of a
   * channel) may still come out as messages until then. For a message frame that does not decode or decrypt; the handshake refuses a bad
   * key or key check this way by itself. Answer only failures that reveal nothing secret (bad
   * Base64, a ciphertext of the wrong length): telling apart bad padding is a padding oracle.
   *
   * @param error - the reason, emitted as `'error'`
   */
  refuse (error: P2snError): void {
    this.#fail(refuse(error))
  }

  // ---- The handshake, one straight-line function per role

  async #run (keys: Promise<KeyPair>): Promise<PeerInfo> {
    this.#keyPair = await keys
    const remote = this.role === 'client' ? await this.#client(this.#keyPair) : await this.#server(this.#keyPair)
    return this.#peerInfo(remote)
  }

  #peerInfo (publicKey: PublicKey): PeerInfo {
    return { publicKey, fingerprint: publicKey.fingerprint, role: this.role, authenticated: this.#authenticated }
  }

  async #client (keys: KeyPair): Promise<PublicKey> {
    this.#send(PUBKEY, 'PUBKEY')
    const serverKey = this.#readPeerKey(await this.#receive('server key'))
    await this.#verify(serverKey)
    this.#send(encodeBase64(this.#encrypt(serverKey, KEYCHECK)), 'KEYCHECK')
    expectKeyword(await this.#receive('PUBKEY'), PUBKEY, 4)
    this.#send(encodeBase64(Buffer.from(keys.publicKey.toPem(), 'latin1')), 'client key')
    await this.#checkKeycheck(await this.#receive('KEYCHECK'), keys)
    return serverKey
  }

  async #server (keys: KeyPair): Promise<PublicKey> {
    const first = await this.#receive('PUBKEY')
    // A TLS record (handshake, version 3.x) where P2SN:PUBKEY should be: a client of the authenticated mode.
    if (first[0] === 0x16 && first[1] === 0x03) {
      throw new P2snError('ERR_P2SN_PROTOCOL', 'the client opened with a tls handshake instead of P2SN:PUBKEY: it runs the authenticated mode, which this side does not; turn on authenticate (p2sn listen --auth) on both sides')
    }
    expectKeyword(first, PUBKEY, 1)
    const pem = Buffer.from(keys.publicKey.toPem(), 'latin1')
    this.#send(this.#serverKeyEncoding === 'pem' ? pem : encodeBase64(pem), 'server key')
    await this.#checkKeycheck(await this.#receive('KEYCHECK'), keys)
    this.#send(PUBKEY, 'PUBKEY')
    const clientKey = this.#readPeerKey(await this.#receive('client key'))
    await this.#verify(clientKey)
    this.#send(encodeBase64(this.#encrypt(clientKey, KEYCHECK)), 'KEYCHECK')
    return clientKey
  }

  // ---- Steps

  #send (frame: Buffer, step: FrameStep): void {
    // The handshake may go on after a destroy (a key still loading, a verifyPeer still running):
    // it must not send, nor trace, anything then.
    if (this.destroyed) throw new P2snError('ERR_P2SN_CLOSED', 'the handshake was cancelled because the stream was destroyed')
    this.#trace?.({ direction: 'out', step, frame })
    this.#transport.write(frame)
  }

  /** The next handshake frame, or the reason there is none. */
  async #receive (step: FrameStep): Promise<Buffer> {
    this.#step = step
    while (this.#inbox.length === 0) {
      if (this.destroyed) throw new P2snError('ERR_P2SN_CLOSED', 'the handshake was cancelled because the stream was destroyed')
      if (this.#transportEnded) {
        throw new P2snError('ERR_P2SN_CLOSED', `the peer closed the connection during the handshake (waiting for ${step}); it may have refused our key, require the authenticated mode, or not speak p2sn`)
      }
      this.#transport.resume()
      await new Promise<void>((resolve) => { this.#wake = resolve })
    }
    const frame = this.#inbox.shift()!
    if (frame.equals(ERRORKEY)) {
      this.#trace?.({ direction: 'in', step: 'ERRORKEY', frame })
      throw errorKeyReceived()
    }
    this.#trace?.({ direction: 'in', step, frame })
    if (frame.length > MAX_HANDSHAKE_FRAME_LENGTH) {
      throw new P2snError('ERR_P2SN_FRAME_TOO_LONG', `a handshake frame of ${frame.length} bytes is longer than the ${MAX_HANDSHAKE_FRAME_LENGTH} allowed; the peer does not speak p2sn`)
    }
    return frame
  }

  /**
   * The peer's public key from a step 2 or 5 frame, raw PEM or Base64 PEM. A key that cannot
   * be read at all fails with `ERR_P2SN_BAD_KEY` (even when it is not Base64 either); a key
   * that can be read but breaks the size or exponent rules keeps its own code.
   */
  #readPeerKey (frame: Buffer): PublicKey {
    try {
      return parsePublicKey(startsWith(frame, PEM_START) ? frame : decodeBase64(frame))
    } catch (err) {
      const readable = err instanceof P2snError && err.code !== 'ERR_P2SN_BAD_BASE64'
      throw refuse(readable ? err : new P2snError('ERR_P2SN_BAD_KEY', 'the peer sent a public key that could not be read (neither pem nor base64 of pem); it does not speak p2sn', { cause: err }))
    }
  }

  async #checkKeycheck (frame: Buffer, keys: KeyPair): Promise<void> {
    let plaintext: Buffer
    try {
      const ciphertext = decodeBase64(frame)
      const options = { strict: true, engine: this.#engine }
      plaintext = this.#pool === undefined
        ? decryptMessage(keys.privateKey, ciphertext, options)
        : await this.#pool.decrypt(keys.privateKey, ciphertext, { ...options, signal: this.#cancel?.signal, waitForRoom: true, urgent: true })
    } catch (err) {
      // A pool that is closed or full is this side's trouble, not a bad key check.
      if (err instanceof P2snError && POOL_FAILURES.has(err.code)) throw err
      throw refuse(new P2snError('ERR_P2SN_BAD_KEYCHECK', 'the peer\'s key check could not be decrypted; it encrypted to another key or does not speak p2sn', { cause: err }))
    }
    if (plaintext.length !== KEYCHECK.length || !crypto.timingSafeEqual(plaintext, KEYCHECK)) {
      throw refuse(new P2snError('ERR_P2SN_BAD_KEYCHECK', 'the peer\'s key check did not decrypt to P2SN:KEYCHECK; it encrypted to another key'))
    }
  }

  #encrypt (key: PublicKey, message: Buffer): Buffer {
    return encryptMessage(key, message, { strict: true, engine: this.#engine })
  }

  /** Whether to go on with the peer's key: the proven key must match it, then verifyPeer decides. */
  async #verify (publicKey: PublicKey): Promise<void> {
    if (this.#provenPeerKey !== undefined) {
      const proven = this.#provenPeerKey()
      if (proven === undefined) {
        throw new P2snError('ERR_P2SN_AUTHENTICATION', 'the peer proved no key in the layer below (tls); it cannot be authenticated')
      }
      if (!proven.equals(publicKey.keyObject)) {
        throw new P2snError('ERR_P2SN_KEY_MISMATCH', `the peer presented the p2sn key ${publicKey.fingerprint}, but proved another key in tls; it may be an impostor or a man in the middle that knows only the public key`)
      }
    }
    if (this.#verifyPeer === undefined) return
    let verdict: boolean | undefined
    try {
      verdict = await this.#verifyPeer(this.#peerInfo(publicKey))
    } catch (err) {
      throw new P2snError('ERR_P2SN_PEER_REJECTED', `verifyPeer refused the peer ${publicKey.fingerprint}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
    if (verdict === false) {
      throw new P2snError('ERR_P2SN_PEER_REJECTED', `verifyPeer refused the peer ${publicKey.fingerprint}; check its fingerprint`)
    }
  }

  #complete (peer: PeerInfo): void {
    if (this.destroyed) return
    clearTimeout(this.#timer)
    this.#peer = peer
    this.emit('handshake', peer)
    const early = this.#inbox
    this.#inbox = []
    for (const frame of early) this.#deliver(frame)
    if (this.destroyed) return
    if (this.#transportEnded) this.#peerEnded()
    // The last handshake frame paused the transport, and a _read() made during the handshake
    // did not resume it (nor will Readable call _read() again before a push): resume it here,
    // or a reader that came early would wait forever. #deliver pauses it again when full.
    else if (this.readableLength < this.readableHighWaterMark) this.#transport.resume()
    const held = this.#heldWrite
    this.#heldWrite = undefined
    if (held !== undefined) this.#forward(held.frame, held.callback)
    const final = this.#heldFinal
    this.#heldFinal = undefined
    if (final !== undefined) this._final(final)
  }

  #fail (err: unknown): void {
    if (this.destroyed || this.#refusal !== undefined) return
    const error = toP2snError(err, 'ERR_P2SN_PROTOCOL', 'the handshake failed')
    if (!answeredWithErrorKey.has(error)) {
      this.destroy(error)
      return
    }
    // Until the refusal is out, whatever the transport does ends in this error, not another.
    this.#refusal = error
    this.#trace?.({ direction: 'out', step: 'ERRORKEY', frame: ERRORKEY })
    this.#linger = setTimeout(() => this.destroy(error), ERRORKEY_LINGER)
    this.#transport.end(ERRORKEY, () => { this.destroy(error) })
  }

  // ---- Frames from the transport

  readonly #onFrame = (frame: Buffer): void => {
    // Once refused, the peer is not listened to any more, as the reference does.
    if (this.#refusal !== undefined) return
    if (this.#peer !== undefined) {
      this.#deliver(frame)
      return
    }
    // During the handshake, hold one frame at a time: a peer cannot make us buffer more.
    this.#inbox.push(frame)
    this.#transport.pause()
    this.#wakeUp()
  }

  #deliver (frame: Buffer): void {
    if (this.destroyed) return
    if (frame.equals(ERRORKEY)) {
      this.#trace?.({ direction: 'in', step: 'ERRORKEY', frame })
      this.destroy(errorKeyReceived())
      return
    }
    if (this.#endSeen) {
      this.destroy(new P2snError('ERR_P2SN_PROTOCOL', 'the peer sent a frame after P2SN:END, its end of stream; it does not speak p2sn\'s authenticated mode'))
      return
    }
    if (this.#authenticated && frame.equals(END)) {
      this.#trace?.({ direction: 'in', step: 'END', frame })
      this.#endSeen = true
      return
    }
    this.#trace?.({ direction: 'in', step: 'message', frame })
    if (!this.push(frame)) this.#transport.pause()
  }

  readonly #onEnd = (): void => {
    this.#transportEnded = true
    // A refused peer's end is not passed on: the refusal's error is how this stream ends.
    if (this.#peer !== undefined && this.#refusal === undefined) this.#peerEnded()
    else this.#wakeUp()
  }

  /**
   * The peer ended its stream after the handshake. In the authenticated mode it must have said
   * so first (`P2SN:END`): over TCP, TLS cannot tell an end from a cut, and an attacker who cuts
   * a stream short would otherwise pass for its end.
   */
  #peerEnded (): void {
    if (this.#authenticated && !this.#endSeen) {
      this.destroy(new P2snError('ERR_P2SN_TRUNCATED', 'the connection ended without the peer\'s P2SN:END: it was cut short (by the network, an attacker, or a peer that crashed or destroyed its side), and what came may be incomplete'))
      return
    }
    this.push(null)
  }

  readonly #onError = (err: Error): void => {
    this.destroy(this.#refusal ?? toP2snError(err, 'ERR_P2SN_CONNECTION', `the connection failed: ${err.message}`))
  }

  readonly #onClose = (): void => {
    if (this.destroyed) return
    if (this.#refusal !== undefined) {
      this.destroy(this.#refusal)
      return
    }
    if (this.#transportEnded) return
    this.destroy(new P2snError('ERR_P2SN_CLOSED', this.#peer === undefined
      ? `the connection closed during the handshake (waiting for ${this.#step})`
      : 'the connection closed before the peer ended its stream; messages may be missing'))
  }

  readonly #onDrain = (): void => {
    const callback = this.#drainCallback
    this.#drainCallback = undefined
    callback?.()
  }

  #wakeUp (): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }

  // ---- Duplex internals

  override _read (): void {
    if (this.#peer !== undefined) this.#transport.resume()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    if (this.#peer === undefined) this.#heldWrite = { frame: chunk, callback }
    else this.#forward(chunk, callback)
  }

  #forward (frame: Buffer, callback: Callback): void {
    this.#trace?.({ direction: 'out', step: 'message', frame })
    if (this.#transport.write(frame)) callback()
    else this.#drainCallback = callback
  }

  override _final (callback: Callback): void {
    if (this.#peer === undefined) {
      this.#heldFinal = callback
      return
    }
    // In the authenticated mode, say that this is the end, not a cut.
    if (this.#authenticated) {
      this.#trace?.({ direction: 'out', step: 'END', frame: END })
      this.#transport.end(END)
    } else {
      this.#transport.end()
    }
    callback()
  }

  override _destroy (err: Error | null, callback: (error: Error | null) => void): void {
    clearTimeout(this.#timer)
    clearTimeout(this.#linger)
    this.#cancel?.abort()
    const pending = [this.#heldWrite?.callback, this.#heldFinal, this.#drainCallback]
    this.#heldWrite = undefined
    this.#heldFinal = undefined
    this.#drainCallback = undefined
    const reason = err ?? new P2snError('ERR_P2SN_CLOSED', 'the stream was destroyed before this write went out')
    for (const fail of pending) fail?.(reason)
    this.#transport.removeListener('data', this.#onFrame)
    this.#transport.removeListener('drain', this.#onDrain)
    this.#transport.destroy()
    this.#wakeUp()
    callback(err)
  }
}

/** Checks a handshake's role, so that {@link wrap} can refuse a bad one before it opens anything. */
export function checkRole (role: unknown): asserts role is Role {
  if (role !== 'client' && role !== 'server') {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `role must be 'client' or 'server', not ${String(role)}`)
  }
}

/**
 * Checks the handshake's options other than the role and the key, for this constructor and for
 * channels, which check before they open anything.
 * @returns the key's encoding and the timeout, defaults applied
 */
export function checkHandshakeOptions (options: Pick<HandshakeOptions, 'serverKeyEncoding' | 'handshakeTimeout' | 'pool' | 'engine'>): { serverKeyEncoding: ServerKeyEncoding, handshakeTimeout: number } {
  const encoding = options.serverKeyEncoding ?? 'base64'
  if (encoding !== 'base64' && encoding !== 'pem') {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `serverKeyEncoding must be 'base64' or 'pem', not ${String(encoding)}`)
  }
  // A pool runs the built-in engines only: say so now, not halfway through the handshake.
  if (options.pool !== undefined) poolEngineName(options.engine)
  return { serverKeyEncoding: encoding, handshakeTimeout: checkLimit('handshakeTimeout', options.handshakeTimeout, DEFAULT_HANDSHAKE_TIMEOUT) }
}

/** The key pair a handshake option names: generated (off the event loop) when none is given. */
export function loadKeys (input: HandshakeOptions['keyPair']): Promise<KeyPair> {
  if (input === undefined) return generateKeyPair()
  if (input instanceof Promise) return input
  return Promise.resolve(toKeyPair(input))
}

function refuse (err: P2snError): P2snError {
  answeredWithErrorKey.add(err)
  return err
}

function errorKeyReceived (): P2snError {
  return new P2snError('ERR_P2SN_ERRORKEY', 'the peer answered P2SN:ERRORKEY: it could not read our key or a message; check that both sides use valid keys and the same protocol')
}

function expectKeyword (frame: Buffer, keyword: Buffer, step: number): void {
  if (!frame.equals(keyword)) {
    throw new P2snError('ERR_P2SN_PROTOCOL', `expected ${keyword.toString()} at handshake step ${step} but got ${frame.length} other bytes; the peer does not speak p2sn or plays the same role`)
  }
}

function startsWith (frame: Buffer, prefix: Buffer): boolean {
  return frame.length >= prefix.length && frame.subarray(0, prefix.length).equals(prefix)
}
