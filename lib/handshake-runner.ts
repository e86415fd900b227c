/**
 * Runs the core's {@link HandshakeMachine} for a stream: loads the key pair, holds frames that
 * come while the machine is busy, decrypts the peer's key check inline or in a pool, asks
 * `verifyPeer` (and, in the authenticated mode, the key proven below), enforces the timeout and
 * traces each frame. {@link HandshakeDuplex} and {@link Channel} both drive their handshakes
 * with it; what they do with the frames it sends and the result is theirs.
 * @module
 */
import type { KeyObject } from 'node:crypto'
import { checkLimit, type EveryOption } from './arguments.js'
import { ERRORKEY, HandshakeMachine, openKeyCheck, type FrameStep, type HandshakeOutput, type Role, type ServerKeyEncoding } from './core/handshake.js'
import { P2snError, toP2snError } from './errors.js'
import { generateKeyPair, toKeyPair, type KeyPair, type PrivateKeyInput, type PublicKey } from './keys.js'
import { DEFAULT_HANDSHAKE_TIMEOUT } from './protocol.js'
import { resolveEngine, type EngineName, type RsaEngine } from './rsa-engine.js'
import { poolEngineName, type RsaPool } from './rsa-pool.js'

export { checkRole, type FrameStep, type Role, type ServerKeyEncoding } from './core/handshake.js'

/** What a handshake learned of the peer: the `'handshake'` event's argument and `verifyPeer`'s. */
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
  /**
   * The peer's address and port, on a channel (not a {@link HandshakeDuplex}): the client's own
   * as a PROXY protocol header gave it to a server with `proxyProtocol`, else the socket's;
   * undefined over a stream that has none (stdio).
   */
  remoteAddress?: string | undefined
  /** The peer's port, as {@link PeerInfo.remoteAddress}. */
  remotePort?: number | undefined
}

/** One frame seen by {@link HandshakeOptions.trace}. */
export interface TraceEvent {
  /** `'out'`: sent by this side; `'in'`: received. */
  direction: 'in' | 'out'
  /** What the frame is. */
  step: FrameStep
  /** The frame's bytes on the wire, terminator excluded: keywords, PEM, or Base64 ciphertext. */
  frame: Buffer
}

/** Options of a handshake: {@link HandshakeDuplex}'s, and the channels' through it. */
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

/** What a {@link HandshakeRunner} needs of the stream it runs for. */
export interface HandshakeHost {
  /** Sends a handshake frame (no terminator). */
  send: (frame: Buffer) => void
  /** The runner holds a frame and wants no more until {@link resume}: stop reading. */
  pause: () => void
  /** The runner takes frames again. */
  resume: () => void
  /** The key pair is loaded (before anything is sent). */
  keysLoaded?: (keyPair: KeyPair) => void
  /** Done: the peer, and the frames that came after the last handshake frame, in order. */
  complete: (peer: PeerInfo, early: Buffer[]) => void
  /**
   * Failed. {@link answersWithErrorKey} says whether the standard wants `P2SN:ERRORKEY` sent
   * before closing. Called once, and nothing is called after it.
   */
  fail: (error: P2snError) => void
}

/**
 * What a key check's decryption fails with that is this side's trouble, not the peer's: a pool
 * that is closed or full, a bad option, an RSA engine that failed. Never blamed on the peer's
 * key check, and never answered with `P2SN:ERRORKEY`.
 */
const LOCAL_FAILURES = new Set<P2snError['code']>(['ERR_P2SN_CLOSED', 'ERR_P2SN_POOL_BUSY', 'ERR_P2SN_INVALID_ARGUMENT', 'ERR_P2SN_ENGINE'])

/**
 * One handshake, driven for a host. Feed it the frames that arrive with {@link frame} until
 * the host's `complete` or `fail` is called; call {@link cancel} when the stream goes away.
 */
export class HandshakeRunner {
  readonly #options: HandshakeOptions
  readonly #host: HandshakeHost
  readonly #authenticated: boolean
  /** Cancels a key check still queued in the pool once this stops: no RSA work for it. */
  readonly #cancel: AbortController | undefined
  #timer: NodeJS.Timeout | undefined

  #keyPair: KeyPair | undefined
  #machine: HandshakeMachine | undefined
  /** Frames received and not yet fed: the machine was busy, or the keys were loading. */
  #inbox: Buffer[] = []
  #started = false
  #inputEnded = false
  #stopped = false

  /**
   * Starts the timeout and loads the key pair; nothing is sent before {@link start}.
   * @param options - checked by {@link checkHandshakeOptions} beforehand
   */
  constructor (options: HandshakeOptions, host: HandshakeHost) {
    this.#options = options
    this.#host = host
    this.#authenticated = options.provenPeerKey !== undefined
    this.#cancel = options.pool === undefined ? undefined : new AbortController()
    // A bad key throws here, before there is a timer to leave behind.
    const input = options.keyPair
    const keys = input === undefined || input instanceof Promise ? loadKeys(input) : toKeyPair(input)
    const timeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT
    if (timeout > 0 && timeout !== Infinity) {
      this.#timer = setTimeout(() => {
        this.#fail(new P2snError('ERR_P2SN_HANDSHAKE_TIMEOUT', `the handshake did not complete within ${timeout} ms (waiting for ${this.step}); the peer is slow, stalled or does not speak p2sn`))
      }, timeout)
    }
    if (keys instanceof Promise) keys.then((pair) => { this.#keysReady(pair) }, (err: unknown) => { this.#fail(err) })
    else this.#keysReady(keys)
  }

  /** This side's key pair, once loaded or generated. */
  get keyPair (): KeyPair | undefined {
    return this.#keyPair
  }

  /** The frame waited for, or the step under way. */
  get step (): FrameStep {
    return this.#machine?.step ?? (this.#options.role === 'client' ? 'server key' : 'PUBKEY')
  }

  /** True once the handshake completed. */
  get complete (): boolean {
    return this.#machine?.done === true
  }

  /** The transport is ready: the handshake may send (at once, or once the keys are loaded). */
  start (): void {
    this.#started = true
    this.#begin()
  }

  /**
   * A frame arrived during the handshake.
   * @returns true when the runner takes the next frame now; false when it holds this one (the host should stop reading until `resume`)
   */
  frame (frame: Buffer): boolean {
    if (this.#stopped) return false
    this.#inbox.push(frame)
    if (this.#inbox.length === 1 && this.#machine?.expecting !== undefined) this.#feed()
    // Done or failed: the host heard of it, and reads on (or not) by itself.
    if (this.#stopped) return false
    if (this.#inbox.length === 0 && this.#machine?.expecting !== undefined) return true
    this.#host.pause()
    return false
  }

  /** The input ended before the handshake completed. */
  ended (): void {
    this.#inputEnded = true
    if (this.#inbox.length === 0 && this.#machine?.expecting !== undefined) this.#feed()
  }

  /** Stops: no more frames sent, no more calls to the host, pool work dropped. */
  cancel (): void {
    this.#stop()
  }

  #keysReady (keys: KeyPair): void {
    if (this.#stopped) return
    this.#keyPair = keys
    this.#host.keysLoaded?.(keys)
    this.#begin()
  }

  #begin (): void {
    const keys = this.#keyPair
    if (!this.#started || keys === undefined || this.#machine !== undefined || this.#stopped) return
    const { role, serverKeyEncoding, engine } = this.#options
    const machine = this.#machine = new HandshakeMachine(role, keys, { serverKeyEncoding, engine })
    this.#run(() => machine.start())
  }

  /** Runs one call of the machine and does what it asks. */
  #run (call: () => HandshakeOutput): void {
    if (this.#stopped) return
    let output: HandshakeOutput
    try {
      output = call()
    } catch (err) {
      this.#fail(err)
      return
    }
    for (const { frame, step } of output.send) {
      if (this.#stopped) return
      this.#options.trace?.({ direction: 'out', step, frame })
      this.#host.send(frame)
    }
    if (this.#stopped) return
    if (output.done !== undefined) this.#complete(output.done)
    else if (output.decrypt !== undefined) this.#decrypt(output.decrypt)
    else if (output.verify !== undefined) this.#verify(output.verify)
    else this.#feed()
  }

  /** Feeds the next frame held, or, with none, asks the host for more. */
  #feed (): void {
    const machine = this.#machine!
    const frame = this.#inbox.shift()
    if (frame === undefined) {
      if (this.#inputEnded) {
        this.#fail(new P2snError('ERR_P2SN_CLOSED', `the peer closed the connection during the handshake (waiting for ${machine.step}); it may have refused our key, require the authenticated mode, or not speak p2sn`))
      } else {
        this.#host.resume()
      }
      return
    }
    this.#options.trace?.({ direction: 'in', step: frame.equals(ERRORKEY) ? 'ERRORKEY' : machine.expecting!, frame })
    this.#run(() => machine.receive(frame))
  }

  #decrypt (ciphertext: Buffer): void {
    const machine = this.#machine!
    const privateKey = this.#keyPair!.privateKey
    const { engine, pool } = this.#options
    if (pool === undefined) {
      let plaintext: Buffer
      try {
        plaintext = openKeyCheck(privateKey, ciphertext, resolveEngine(engine))
      } catch (err) {
        this.#decryptFailed(err)
        return
      }
      this.#run(() => machine.keyChecked(plaintext))
      return
    }
    // keyCheck implies strict: one block, and the same question as openKeyCheck's.
    pool.decrypt(privateKey, ciphertext, { engine, keyCheck: true, signal: this.#cancel?.signal, waitForRoom: true, urgent: true }).then(
      (plaintext) => { this.#run(() => machine.keyChecked(plaintext)) },
      (err: unknown) => { this.#decryptFailed(err) }
    )
  }

  /** The key check's decryption failed: this side's trouble fails here, the rest is the peer's. */
  #decryptFailed (err: unknown): void {
    if (err instanceof P2snError && LOCAL_FAILURES.has(err.code)) this.#fail(err)
    else this.#run(() => this.#machine!.keyCheckFailed(err))
  }

  /** Whether to go on with the peer's key: the proven key must match it, then verifyPeer decides. */
  #verify (publicKey: PublicKey): void {
    const machine = this.#machine!
    const provenPeerKey = this.#options.provenPeerKey
    if (provenPeerKey !== undefined) {
      const proven = provenPeerKey()
      if (proven === undefined) {
        this.#fail(new P2snError('ERR_P2SN_AUTHENTICATION', 'the peer proved no key in the layer below (tls); it cannot be authenticated'))
        return
      }
      if (!proven.equals(publicKey.keyObject)) {
        this.#fail(new P2snError('ERR_P2SN_KEY_MISMATCH', `the peer presented the p2sn key ${publicKey.fingerprint}, but proved another key in tls; it may be an impostor or a man in the middle that knows only the public key`))
        return
      }
    }
    const verifyPeer = this.#options.verifyPeer
    if (verifyPeer === undefined) {
      this.#run(() => machine.accepted())
      return
    }
    const refused = (reason: string, cause?: unknown): P2snError =>
      new P2snError('ERR_P2SN_PEER_REJECTED', `verifyPeer refused the peer ${publicKey.fingerprint}${reason}`, cause === undefined ? undefined : { cause })
    let verdict: ReturnType<typeof verifyPeer>
    try {
      verdict = verifyPeer(this.#peerInfo(publicKey))
    } catch (err) {
      this.#fail(refused(`: ${err instanceof Error ? err.message : String(err)}`, err))
      return
    }
    Promise.resolve(verdict).then((answer) => {
      if (answer === false) this.#fail(refused('; check its fingerprint'))
      else this.#run(() => machine.accepted())
    }, (err: unknown) => { this.#fail(refused(`: ${err instanceof Error ? err.message : String(err)}`, err)) })
  }

  #peerInfo (publicKey: PublicKey): PeerInfo {
    return { publicKey, fingerprint: publicKey.fingerprint, role: this.#options.role, authenticated: this.#authenticated }
  }

  #complete (peerKey: PublicKey): void {
    const early = this.#inbox
    this.#inbox = []
    this.#stop()
    this.#host.complete(this.#peerInfo(peerKey), early)
  }

  #fail (err: unknown): void {
    if (this.#stopped) return
    this.#stop()
    this.#host.fail(toP2snError(err, 'ERR_P2SN_PROTOCOL', 'the handshake failed'))
  }

  #stop (): void {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#cancel?.abort()
    this.#inbox = []
  }
}

/**
 * The handshake's options copied key by key (see `EveryOption`), for a stream or a channel to
 * change and hand to its {@link HandshakeRunner}.
 */
export function handshakeSettings (options: HandshakeOptions): EveryOption<HandshakeOptions> {
  return {
    role: options.role,
    keyPair: options.keyPair,
    serverKeyEncoding: options.serverKeyEncoding,
    handshakeTimeout: options.handshakeTimeout,
    verifyPeer: options.verifyPeer,
    engine: options.engine,
    pool: options.pool,
    trace: options.trace,
    provenPeerKey: options.provenPeerKey
  }
}

/**
 * Checks the handshake's options other than the role and the key, for the handshake's streams
 * and for channels, which check before they open anything.
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

/** What a stream over a connection fails with when the connection errs: its refusal under way, or the connection's error. */
export function connectionFailure (err: Error, refusal: P2snError | undefined): P2snError {
  return refusal ?? toP2snError(err, 'ERR_P2SN_CONNECTION', `the connection failed: ${err.message}`)
}

/**
 * What a stream over a connection fails with when the connection closes: its refusal under way;
 * nothing once the peer ended its stream; else `ERR_P2SN_CLOSED`, as messages may be missing.
 */
export function closeFailure (refusal: P2snError | undefined, peerEnded: boolean, handshakeStep: FrameStep | undefined): P2snError | undefined {
  if (refusal !== undefined) return refusal
  if (peerEnded) return undefined
  return new P2snError('ERR_P2SN_CLOSED', handshakeStep !== undefined
    ? `the connection closed during the handshake (waiting for ${handshakeStep})`
    : 'the connection closed before the peer ended its stream; messages may be missing')
}
