/**
 * The P2SN handshake as a stream: a duplex over a duplex of frames that runs the six steps
 * (the core's {@link HandshakeMachine}, driven by a {@link HandshakeRunner}), after which the
 * same duplex carries the peers' message frames. A layer to compose by hand; channels run the
 * same machine over their connection without it.
 * @module
 */
import { answersWithErrorKey, ERRORKEY } from './core/handshake.js'
import { SessionFrames } from './core/session.js'
import { P2snError } from './errors.js'
import type { WithEvents } from './events.js'
import { checkHandshakeOptions, checkRole, closeFailure, connectionFailure, HandshakeRunner, handshakeSettings, type HandshakeOptions, type PeerInfo, type Role } from './handshake-runner.js'
import type { KeyPair, PublicKey } from './keys.js'
import { MESSAGE_HIGH_WATER_MARK } from './protocol.js'
import { Duplex } from './streams.js'

export {
  checkHandshakeOptions, checkRole, loadKeys,
  type FrameStep, type HandshakeOptions, type PeerInfo, type Role, type ServerKeyEncoding, type TraceEvent
} from './handshake-runner.js'

/** The stream interface this needs of its transport: an object-mode duplex of frames. */
export interface FrameTransport {
  /** Sends one frame; false when its buffer is full, until `'drain'`. */
  write (frame: Buffer): boolean
  /** Ends it, after one last frame if given; `callback` once that is flushed. */
  end (frame?: Buffer | (() => void), callback?: () => void): unknown
  /** Stops its `'data'` events: how the handshake and a lagging reader push back. */
  pause (): unknown
  /** Starts its `'data'` events again. */
  resume (): unknown
  /** Closes it: this stream does so when it is destroyed. */
  destroy (error?: Error): unknown
  /** Listens for `'data'` (one frame), `'end'`, `'error'`, `'close'` and `'drain'`. */
  on (event: string, listener: (...args: never[]) => void): unknown
  /** Stops listening for `'data'` and `'drain'`, once this stream is destroyed. */
  removeListener (event: string, listener: (...args: never[]) => void): unknown
}

/** How long a refusing side waits for its `P2SN:ERRORKEY` to flush before closing anyway. */
const ERRORKEY_LINGER = 1000

type Callback = (error?: Error | null) => void

/** The events of a {@link HandshakeDuplex} beside those of every Duplex. */
export interface HandshakeDuplexEvents {
  /** The handshake is done. */
  handshake: [peer: PeerInfo]
  /** One message frame received: Base64 ciphertext, still to be decoded and decrypted. */
  data: [frame: Buffer]
  /** The handshake or the transport failed: a {@link P2snError}, or the error given to `destroy(error)`. */
  error: [error: Error]
}

/**
 * Runs the handshake over `transport`, an object-mode duplex of frames (such as
 * `frameDuplex(socket)`), then is a duplex of the message frames exchanged over it: Base64
 * ciphertext, still to be decoded and decrypted.
 *
 * Frames written before the handshake completes are held, not lost. It emits `'handshake'`
 * with a {@link PeerInfo} when done. A `P2SN:ERRORKEY` received at any time fails it with
 * `ERR_P2SN_ERRORKEY`; a bad key check or an unreadable key is answered with `P2SN:ERRORKEY`, as
 * the standard says, before closing.
 */
export class HandshakeDuplex extends (Duplex as WithEvents<typeof Duplex, HandshakeDuplexEvents>) {
  /** This side's role. */
  readonly role: Role

  readonly #transport: FrameTransport
  readonly #runner: HandshakeRunner
  readonly #trace: HandshakeOptions['trace']

  #peer: PeerInfo | undefined
  #transportEnded = false
  /** What the frames after the handshake are, and how each side's stream must end. */
  readonly #session: SessionFrames

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
    const { handshakeTimeout } = checkHandshakeOptions(options)
    this.role = options.role
    this.#transport = transport
    this.#trace = options.trace
    this.#session = new SessionFrames(options.provenPeerKey !== undefined, options.trace)
    const settings = handshakeSettings(options)
    settings.handshakeTimeout = handshakeTimeout
    this.#runner = new HandshakeRunner(settings, {
      send: (frame) => { this.#transport.write(frame) },
      pause: () => { this.#transport.pause() },
      resume: () => { this.#transport.resume() },
      complete: (peer, early) => { this.#complete(peer, early) },
      fail: (error) => {
        if (answersWithErrorKey(error)) this.#refuse(error)
        else this.destroy(error)
      }
    })
    transport.on('data', this.#onFrame)
    transport.on('end', this.#onEnd)
    transport.on('error', this.#onError)
    transport.on('close', this.#onClose)
    transport.on('drain', this.#onDrain)
    // Not from inside the constructor: a stream destroyed at once sends nothing.
    queueMicrotask(() => { this.#runner.start() })
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
    return this.#runner.keyPair
  }

  /** True once the six steps have checked out. */
  get handshakeComplete (): boolean {
    return this.#peer !== undefined
  }

  /**
   * Refuses the peer as the standard says: sends `P2SN:ERRORKEY` in plain after the frames
   * already written, takes no more frames from the transport, and fails with `error` once that
   * is flushed (or after a second). Frames it had already passed on (one per layer of a
   * chain composed over it) may still come out as messages until then. For a message frame that does not
   * decode or decrypt; the handshake refuses a bad key or key check this way by itself. Answer
   * only failures that reveal nothing secret (bad Base64, a ciphertext of the wrong length):
   * telling apart bad padding is a padding oracle.
   *
   * @param error - the reason, emitted as `'error'`
   */
  refuse (error: P2snError): void {
    this.#refuse(error)
  }

  #complete (peer: PeerInfo, early: Buffer[]): void {
    if (this.destroyed) return
    this.#peer = peer
    this.emit('handshake', peer)
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

  #refuse (error: P2snError): void {
    if (this.destroyed || this.#refusal !== undefined) return
    this.#runner.cancel()
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
    if (this.#peer !== undefined) this.#deliver(frame)
    else this.#runner.frame(frame)
  }

  #deliver (frame: Buffer): void {
    if (this.destroyed) return
    const taken = this.#session.receive(frame)
    if (taken instanceof P2snError) {
      this.destroy(taken)
      return
    }
    if (!taken) return
    if (!this.push(frame)) this.#transport.pause()
  }

  readonly #onEnd = (): void => {
    this.#transportEnded = true
    // A refused peer's end is not passed on: the refusal's error is how this stream ends.
    if (this.#refusal !== undefined) return
    if (this.#peer !== undefined) this.#peerEnded()
    else this.#runner.ended()
  }

  /**
   * The peer ended its stream after the handshake. In the authenticated mode it must have said
   * so first (`P2SN:END`): over TCP, TLS cannot tell an end from a cut, and an attacker who cuts
   * a stream short would otherwise pass for its end.
   */
  #peerEnded (): void {
    const cut = this.#session.ended()
    if (cut === undefined) this.push(null)
    else this.destroy(cut)
  }

  readonly #onError = (err: Error): void => {
    this.destroy(connectionFailure(err, this.#refusal))
  }

  readonly #onClose = (): void => {
    if (this.destroyed) return
    const failure = closeFailure(this.#refusal, this.#transportEnded, this.#peer === undefined ? this.#runner.step : undefined)
    if (failure !== undefined) this.destroy(failure)
  }

  readonly #onDrain = (): void => {
    const callback = this.#drainCallback
    this.#drainCallback = undefined
    callback?.()
  }

  // ---- Duplex internals

  /**
   * Duplex's hook (not to call directly): the reader wants more, so the transport resumes once the
   * handshake is done.
   * @internal
   */
  override _read (): void {
    if (this.#peer !== undefined) this.#transport.resume()
  }

  /**
   * Duplex's hook (not to call directly): sends one frame, held until the handshake is done.
   * @internal
   */
  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    if (this.#peer === undefined) this.#heldWrite = { frame: chunk, callback }
    else this.#forward(chunk, callback)
  }

  #forward (frame: Buffer, callback: Callback): void {
    this.#trace?.({ direction: 'out', step: 'message', frame })
    if (this.#transport.write(frame)) callback()
    else this.#drainCallback = callback
  }

  /**
   * Duplex's hook (not to call directly): ends the transport, after `P2SN:END` in the authenticated
   * mode; held until the handshake is done.
   * @internal
   */
  override _final (callback: Callback): void {
    if (this.#peer === undefined) {
      this.#heldFinal = callback
      return
    }
    // In the authenticated mode, say that this is the end, not a cut.
    const last = this.#session.lastFrame
    if (last === undefined) {
      this.#transport.end()
    } else {
      this.#trace?.({ direction: 'out', step: 'END', frame: last })
      this.#transport.end(last)
    }
    callback()
  }

  /**
   * Duplex's hook (not to call directly): stops the handshake, fails the writes still held, and
   * destroys the transport.
   * @internal
   */
  override _destroy (err: Error | null, callback: (error: Error | null) => void): void {
    this.#runner.cancel()
    clearTimeout(this.#linger)
    const pending = [this.#heldWrite?.callback, this.#heldFinal, this.#drainCallback]
    this.#heldWrite = undefined
    this.#heldFinal = undefined
    this.#drainCallback = undefined
    const reason = err ?? new P2snError('ERR_P2SN_CLOSED', 'the stream was destroyed before this write went out')
    for (const fail of pending) fail?.(reason)
    this.#transport.removeListener('data', this.#onFrame)
    this.#transport.removeListener('drain', this.#onDrain)
    this.#transport.destroy()
    callback(err)
  }
}
