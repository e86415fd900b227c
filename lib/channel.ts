/**
 * Secure channels: the four layers and the handshake composed around any duplex, plus TCP and
 * TLS clients and servers with the reference's request/reply way of working.
 * @module
 */
import type { KeyObject } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'
import type { Duplex as NodeDuplex } from 'node:stream'
import Pumpify from 'pumpify'
import { Duplex } from 'readable-stream'
import { checkLimit, toBuffer } from './arguments.js'
import { authenticate, authenticationContext, type AuthenticationTlsOptions } from './authentication.js'
import { Base64Codec } from './base64-codec.js'
import { P2snError, toP2snError } from './errors.js'
import { FrameJoiner } from './frame-joiner.js'
import { FrameSplitter } from './frame-splitter.js'
import { checkHandshakeOptions, checkRole, HandshakeDuplex, loadKeys, type HandshakeOptions, type PeerInfo, type FrameTransport } from './handshake-duplex.js'
import { toKeyPair, type KeyPair, type PublicKey } from './keys.js'
import {
  DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAME_LENGTH, DEFAULT_MAX_MESSAGE_BLOCKS, DEFAULT_MAX_PENDING_HANDSHAKES, HANDSHAKE_FRAMES,
  KEYWORD_UNEXPECTEDERROR, MAX_HANDSHAKE_FRAME_LENGTH, MESSAGE_HIGH_WATER_MARK
} from './protocol.js'
import { blockLimit, RsaCipher, type RsaCipherOptions } from './rsa-cipher.js'
import { poolEngineName, RsaPool } from './rsa-pool.js'

const UNEXPECTEDERROR = Buffer.from(KEYWORD_UNEXPECTEDERROR)

/** pumpify's object-mode chain, buffering one message a side instead of 16 (see MESSAGE_HIGH_WATER_MARK). */
const MessageChain = Pumpify.ctor({ autoDestroy: false, destroy: false, objectMode: true, highWaterMark: MESSAGE_HIGH_WATER_MARK })

/** Options of {@link wrap}, and of {@link connect} and {@link createServer} through it. */
export interface ChannelOptions extends Omit<HandshakeOptions, 'role' | 'pool' | 'provenPeerKey'>, Pick<RsaCipherOptions, 'strict' | 'rejection' | 'maxMessageBlocks'> {
  /**
   * Longest frame accepted after the handshake, in bytes: `ERR_P2SN_FRAME_TOO_LONG`. Default
   * 1 MiB. Handshake frames are held to 8 KiB whatever this says.
   */
  maxFrameLength?: number
  /**
   * Milliseconds without a whole message in either direction after the handshake before the
   * channel fails with `ERR_P2SN_IDLE_TIMEOUT` (a peer trickling a frame byte by byte counts as
   * idle). Default 0: none.
   */
  idleTimeout?: number
  /**
   * Decrypt in this many worker threads instead of on the event loop, the handshake's key check
   * included: a pool of the channel's own, or for a server one pool shared by all its channels,
   * closed with it. Use `pool` to share one pool more widely. Default: inline.
   */
  workers?: number
  /**
   * Decrypt in this pool's worker threads instead of on the event loop, the messages and the
   * handshake's key check; share one pool among channels and servers, and close it yourself.
   * Default: inline.
   */
  pool?: RsaPool
  /**
   * The authenticated mode: run P2SN inside mutual TLS 1.3, each side presenting a certificate
   * of its own P2SN key, and require that the key each peer proves in TLS is the key it presents
   * in the P2SN handshake (else `ERR_P2SN_KEY_MISMATCH`). Then the fingerprint that `verifyPeer`
   * and `'handshake'` see is proven, and {@link PeerInfo.authenticated} is true. Both sides must
   * turn it on: a plain peer, the Python reference included, fails at once with
   * `ERR_P2SN_AUTHENTICATION`. TLS options of your own go in `tls`. Default `false`: plain P2SN,
   * which authenticates nobody.
   */
  authenticate?: boolean
}

/** Options of {@link wrap}. */
export interface WrapOptions extends ChannelOptions {
  /** This side's role: the client speaks first. */
  role: HandshakeOptions['role']
  /** With `authenticate` only: TLS options of your own; see {@link AuthenticationTlsOptions}. */
  tls?: AuthenticationTlsOptions
}

/**
 * An encrypted message duplex: each write is one message, each `'data'` one message (Buffers).
 * Made by {@link wrap}, {@link connect} and servers. Emits `'handshake'` with a
 * {@link PeerInfo} once the handshake is done (the peer's key is proven only in the
 * authenticated mode: see `authenticate`); writes made before then wait, and are not lost.
 * `end()` half-closes: the peer sees `'end'` and can still write back, and the channel closes
 * once both sides have ended (so end yours when the peer's `'end'` comes; a server with a
 * `handler` does). `destroy()` closes quietly and tears down the whole chain, underlying stream
 * included, even before the handshake is done.
 */
export class Channel extends MessageChain {
  /** The handshake layer, which also carries the message frames. */
  readonly handshake: HandshakeDuplex
  #requests: Array<{ message: Buffer, resolve: (reply: Buffer) => void, reject: (err: Error) => void }> = []
  #inFlight = false
  #listening = false
  // Idle timeout: when a whole message last went either way, and the timer that checks it
  readonly #idleTimeout: number
  #lastActive = 0
  #idleTimer: NodeJS.Timeout | undefined

  /**
   * Prefer {@link wrap}; this composes the layers around `handshake`. A pool made here for
   * `workers` decrypts the messages only: the handshake was built before it (wrap() gives
   * both the same pool).
   */
  constructor (handshake: HandshakeDuplex, options: Pick<ChannelOptions, 'strict' | 'rejection' | 'maxMessageBlocks' | 'engine' | 'pool' | 'workers' | 'idleTimeout'> = {}) {
    super()
    this.handshake = handshake
    this.#idleTimeout = checkLimit('idleTimeout', options.idleTimeout, 0)
    let pool = options.pool
    if (pool === undefined && options.workers !== undefined) {
      const own = pool = new RsaPool({ workers: options.workers })
      this.once('close', () => { void own.close() })
    }
    const onEarlyError = (err: Error): void => { this.destroy(err) }
    handshake.on('error', onEarlyError)
    handshake.once('handshake', (peer: PeerInfo) => {
      // Listeners run before the writes held during the handshake go out, and may add to them.
      this.emit('handshake', peer)
      if (this.destroyed) return
      // From here pump reports the handshake's errors.
      handshake.removeListener('error', onEarlyError)
      const cipher = { strict: options.strict, rejection: options.rejection, engine: options.engine, maxMessageBlocks: options.maxMessageBlocks ?? DEFAULT_MAX_MESSAGE_BLOCKS }
      // A frame that is not Base64 or not whole blocks is answered P2SN:ERRORKEY, then fails us.
      const onInvalid = (error: P2snError): void => { handshake.refuse(error) }
      this.setPipeline(
        RsaCipher.encryptor(peer.publicKey, cipher),
        Base64Codec.encoder(),
        handshake,
        Base64Codec.decoder({ onInvalid }),
        RsaCipher.decryptor(handshake.keyPair!, { ...cipher, pool, onInvalid }),
        new HalfCloseGate(handshake, this.#touch)
      )
      this.#startIdleTimer()
    })
    // Until the handshake is done there is no pipeline for destroy() to tear down: do it here.
    this.once('close', () => {
      clearTimeout(this.#idleTimer)
      if (!handshake.destroyed) handshake.destroy()
    })
    // Like a socket, close once both directions are done (duplexify alone never would).
    let done = 0
    const closeWhenDone = (): void => {
      if (++done === 2) process.nextTick(() => this.destroy())
    }
    this.once('end', closeWhenDone)
    this.once('finish', closeWhenDone)
  }

  /** The peer's public key, once the handshake is done. */
  get remotePublicKey (): PublicKey | undefined {
    return this.handshake.remotePublicKey
  }

  // Writes are messages too: they keep the channel from being idle.
  override write (chunk: unknown, encoding?: BufferEncoding | ((error: Error | null | undefined) => void), callback?: (error: Error | null | undefined) => void): boolean {
    this.#touch()
    return super.write(chunk, encoding as BufferEncoding, callback)
  }

  readonly #touch = (): void => {
    if (this.#idleTimeout > 0) this.#lastActive = Date.now()
  }

  // One timer for the channel's life, not one per message: when it fires early it waits out the rest.
  #startIdleTimer (): void {
    const timeout = this.#idleTimeout
    if (timeout === 0 || timeout === Infinity) return
    this.#lastActive = Date.now()
    const check = (): void => {
      const idle = Date.now() - this.#lastActive
      if (idle >= timeout) {
        this.destroy(new P2snError('ERR_P2SN_IDLE_TIMEOUT', `no message went either way for ${timeout} ms (idleTimeout); the peer is gone or stalled`))
        return
      }
      this.#idleTimer = setTimeout(check, timeout - idle)
    }
    this.#idleTimer = setTimeout(check, timeout)
  }

  /** The peer's fingerprint, once the handshake is done. */
  get remoteFingerprint (): string | undefined {
    return this.handshake.remoteFingerprint
  }

  /**
   * Sends one request and resolves with the peer's reply, the reference's way of working. One
   * request is in flight at a time and later calls wait their turn, since the Python reference
   * server loses a request that arrives before it has answered the last. Replies are read from
   * this channel's messages: do not also consume `'data'` yourself.
   *
   * @throws P2snError `ERR_P2SN_UNEXPECTED_ERROR` when the server's handler failed;
   *   `ERR_P2SN_CLOSED` when the channel ends or closes first
   */
  request (message: Uint8Array | string): Promise<Buffer> {
    const bytes = toBuffer(message)
    return new Promise((resolve, reject) => {
      if (this.destroyed || this.readableEnded || this.writableEnded) {
        reject(new P2snError('ERR_P2SN_CLOSED', this.destroyed
          ? 'the channel is closed; open a new one to send requests'
          : this.readableEnded
            ? 'the peer has ended its side of the channel and will send no reply; open a new one to send requests'
            : 'this side has ended the channel (end()), so no request can go out; open a new one'))
        return
      }
      this.#requests.push({ message: bytes, resolve, reject })
      this.#listen()
      this.#next()
    })
  }

  #listen (): void {
    if (this.#listening) return
    this.#listening = true
    this.on('data', (reply: Buffer) => {
      if (!this.#inFlight) {
        this.emit('unsolicited', reply)
        return
      }
      const request = this.#requests.shift()!
      this.#inFlight = false
      if (reply.equals(UNEXPECTEDERROR)) {
        request.reject(new P2snError('ERR_P2SN_UNEXPECTED_ERROR', 'the server\'s handler failed on this request (it answered P2SN:UNEXPECTEDERROR)'))
      } else {
        request.resolve(reply)
      }
      this.#next()
    })
    const failAll = (err?: Error): void => {
      const reason = err instanceof Error
        ? toP2snError(err, 'ERR_P2SN_CONNECTION', `the channel failed: ${err.message}`)
        : new P2snError('ERR_P2SN_CLOSED', 'the channel closed before the reply came; the peer hung up')
      for (const request of this.#requests.splice(0)) request.reject(reason)
    }
    this.on('error', failAll)
    this.on('end', () => { failAll() })
    this.on('close', () => { failAll() })
  }

  #next (): void {
    const request = this.#requests[0]
    if (this.#inFlight || request === undefined) return
    this.#inFlight = true
    this.write(request.message)
  }
}

// pumpify builds on readable-stream 3, whose streams lack these getters that Node's typings
// promise (they read undefined): give Channel the real values, which request() relies on.
interface StreamStates {
  _readableState: { endEmitted: boolean }
  _writableState: { ending: boolean, finished: boolean }
}
Object.defineProperties(Channel.prototype, {
  readableEnded: { configurable: true, get (this: StreamStates): boolean { return this._readableState.endEmitted } },
  writableEnded: { configurable: true, get (this: StreamStates): boolean { return this._writableState.ending } },
  writableFinished: { configurable: true, get (this: StreamStates): boolean { return this._writableState.finished } }
})

/** What {@link HalfCloseGate} needs of the duplex in the middle of a chain. */
interface ChainMiddle {
  readonly destroyed: boolean
  readonly writableFinished: boolean
  on (event: 'finish' | 'close', listener: () => void): unknown
  removeListener (event: 'finish' | 'close', listener: () => void): unknown
}

/**
 * The last stream of a pumpify chain that runs through a duplex, `middle` (the transport in
 * {@link wrap}, the handshake in {@link Channel}). pump calls a chain done as soon as its last
 * stream finishes, and then destroys every stream not yet closed: without this gate, the peer
 * ending its side would destroy `middle` while this side still writes to it, and `end()` could
 * not half-close. The gate passes each message through and ends its readable side as soon as
 * its input ends, but finishes only once `middle` has finished writing (or closed): the chain
 * is done when both directions are.
 */
class HalfCloseGate extends Duplex {
  readonly #middle: ChainMiddle
  readonly #onChunk: (() => void) | undefined
  #heldWrite: ((error?: Error | null) => void) | undefined

  /**
   * @param middle - the duplex whose writing must be done before the chain is
   * @param onChunk - called for each chunk that passes
   */
  constructor (middle: ChainMiddle, onChunk?: () => void) {
    super({ objectMode: true, highWaterMark: MESSAGE_HIGH_WATER_MARK })
    this.#middle = middle
    this.#onChunk = onChunk
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#onChunk?.()
    if (this.push(chunk)) callback()
    else this.#heldWrite = callback
  }

  override _read (): void {
    const callback = this.#heldWrite
    this.#heldWrite = undefined
    callback?.()
  }

  override _final (callback: (error?: Error | null) => void): void {
    this.push(null)
    const middle = this.#middle
    if (middle.destroyed || writeSideDone(middle)) {
      callback()
      return
    }
    const done = (): void => {
      middle.removeListener('finish', done)
      middle.removeListener('close', done)
      callback()
    }
    middle.on('finish', done)
    middle.on('close', done)
  }

  override _destroy (err: Error | null, callback: (error: Error | null) => void): void {
    this.#heldWrite = undefined
    callback(err)
  }
}

/** True once `stream` has finished writing; streams of readable-stream 3 only say so in their state. */
function writeSideDone (stream: ChainMiddle): boolean {
  return stream.writableFinished === true ||
    (stream as { _writableState?: { finished?: boolean } })._writableState?.finished === true
}

/**
 * Wraps a duplex byte stream (a TCP or TLS socket, stdio, a child process's stdio) in a
 * {@link Channel}: runs the handshake as `role`, then carries encrypted messages.
 *
 * @example
 * const channel = wrap(socket, { role: 'client', keyPair })
 * channel.write('hello')
 * channel.on('data', (message) => console.log(message.toString()))
 */
export function wrap (duplex: NodeDuplex, options: WrapOptions): Channel {
  return wrapChannel(duplex, options)
}

/** {@link wrap}, and for {@link connect} the host the client dialled, which TLS checks certificates against. */
function wrapChannel (duplex: NodeDuplex, options: WrapOptions, host?: string): Channel {
  let checked: ReturnType<typeof checkChannelOptions>
  try {
    checked = checkChannelOptions(options)
    checkRole(options.role)
    if (options.tls !== undefined && options.authenticate !== true) {
      throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'wrap() takes tls options only with authenticate: true; for plain tls, wrap a tls socket')
    }
  } catch (err) {
    // Nothing was built on it yet: do not leave the stream open behind a thrown error.
    duplex.destroy()
    throw err
  }
  const splitter = new FrameSplitter({ maxFrameLength: checked.maxFrameLength, leadingFrames: HANDSHAKE_FRAMES, maxLeadingFrameLength: MAX_HANDSHAKE_FRAME_LENGTH })
  const framed = new MessageChain()
  let attached: NodeDuplex | undefined
  const attach = (transport: NodeDuplex): void => {
    attached = transport
    framed.setPipeline(new FrameJoiner(), transport, splitter, new HalfCloseGate(transport))
  }
  // One key pair for TLS and the handshake, even when it is generated here.
  const keys = loadKeys(checked.keyPair)
  // A frame longer than the Base64 of maxMessageBlocks blocks of our key holds no message we
  // take: refused as it arrives (P2SN:ERRORKEY), not buffered up to maxFrameLength first.
  keys.then((keyPair) => {
    const longest = 4 * Math.ceil(checked.maxMessageBlocks * keyPair.privateKey.size / 3)
    if (longest >= checked.maxFrameLength) return
    splitter.refuseFramesOver(longest, () => {
      handshake?.refuse(new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', `a frame of more than ${longest} bytes cannot hold a message of maxMessageBlocks (${checked.maxMessageBlocks}) rsa blocks of this side's key; raise maxMessageBlocks on this side if the peer really sends messages this long`))
    })
  }, () => {})
  let provenPeerKey: (() => KeyObject | undefined) | undefined
  if (options.authenticate === true) {
    // The frames wait (pumpify holds them) until TLS is up and the peer has proven a key.
    const tlsUp = authenticate(duplex, options.role, keys, options.tls, host)
    let proven: KeyObject | undefined
    provenPeerKey = () => proven
    framed.once('close', tlsUp.abort)
    tlsUp.ready.then(({ socket, peerKey }) => {
      framed.removeListener('close', tlsUp.abort)
      proven = peerKey
      attach(socket)
    }, (err: unknown) => { framed.destroy(err as Error) })
  } else {
    attach(duplex)
  }
  // A pool of the channel's own for `workers` is made here, so that the key check uses it too.
  const own = options.pool === undefined && options.workers !== undefined ? new RsaPool({ workers: options.workers }) : undefined
  const pool = options.pool ?? own
  let handshake: HandshakeDuplex | undefined
  try {
    handshake = new HandshakeDuplex(framed as unknown as FrameTransport, { ...options, keyPair: keys, pool, provenPeerKey })
    const channel = new Channel(handshake, { ...options, pool, workers: undefined })
    if (own !== undefined) channel.once('close', () => { void own.close() })
    // The connection goes with the channel: the chain lets go of a stream once its part is done,
    // and a refused peer that neither reads nor hangs up would otherwise keep a half-open socket.
    channel.once('close', () => {
      // Over TLS, the TLS socket and the socket under it; in plain P2SN they are one.
      if (attached !== undefined && attached !== duplex) release(attached)
      release(duplex)
    })
    return channel
  } catch (err) {
    void own?.close()
    framed.destroy()
    duplex.destroy()
    throw err
  }
}

/** How long a closed channel lets what it wrote flush before its connection is destroyed. */
const RELEASE_LINGER = 1000

/**
 * Destroys `stream` once what was written to it is out: what the chain still passes on to it
 * when the channel closes (a last P2SN:ERRORKEY or P2SN:END) goes first, within
 * {@link RELEASE_LINGER} (a peer that does not read gets no longer).
 */
function release (stream: NodeDuplex): void {
  if (stream.destroyed) return
  if (stream.writableFinished) {
    stream.destroy()
    return
  }
  const timer = setTimeout(() => { stream.destroy() }, RELEASE_LINGER)
  timer.unref()
  stream.once('finish', () => {
    clearTimeout(timer)
    stream.destroy()
  })
}

/**
 * Checks the options every channel takes, before anything is opened, so that a bad option
 * throws at once instead of leaving a socket behind.
 */
function checkChannelOptions (options: ChannelOptions & { tls?: AuthenticationTlsOptions }): { maxFrameLength: number, maxMessageBlocks: number, keyPair: ChannelOptions['keyPair'] } {
  checkLimit('idleTimeout', options.idleTimeout, 0)
  const maxMessageBlocks = blockLimit(options)
  if (options.authenticate !== undefined && typeof options.authenticate !== 'boolean') {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `authenticate must be true or false, not ${String(options.authenticate)}`)
  }
  if (options.workers !== undefined) {
    checkLimit('workers', options.workers, 1, 1)
    poolEngineName(options.engine)
  }
  checkHandshakeOptions(options)
  // A key given as PEM is read now, once, so that a bad one throws before anything opens.
  const keyPair = options.keyPair === undefined || options.keyPair instanceof Promise ? options.keyPair : toKeyPair(options.keyPair)
  // TLS options of one's own that cannot work should throw now too.
  if (options.authenticate === true && keyPair !== undefined && !(keyPair instanceof Promise)) authenticationContext(keyPair, options.tls)
  return {
    maxFrameLength: checkLimit('maxFrameLength', options.maxFrameLength, DEFAULT_MAX_FRAME_LENGTH, MAX_HANDSHAKE_FRAME_LENGTH),
    maxMessageBlocks,
    keyPair
  }
}

/** Options of {@link connect}. */
export interface ConnectOptions extends ChannelOptions {
  /** Host to connect to. Default `'127.0.0.1'`. */
  host?: string
  /** TCP port. */
  port: number
  /** Connect over TLS with these options (`ca`, `servername`, …); plain TCP when left out. */
  tls?: tls.ConnectionOptions
}

/**
 * Connects to a P2SN server over TCP (or TLS, given `tls`) as the client. The channel is
 * returned at once; listen for `'handshake'`, or just write: messages wait for the handshake.
 *
 * @example
 * const channel = connect({ host: 'localhost', port: 7000, keyPair })
 * console.log((await channel.request('hello')).toString())
 */
export function connect (options: ConnectOptions): Channel {
  const { host = '127.0.0.1', port, tls: tlsOptions, ...rest } = options
  rest.keyPair = checkChannelOptions(options).keyPair
  // Half-open, so that end() half-closes instead of the socket ending itself on the peer's end.
  // (tls.connect passes allowHalfOpen on to its socket; its typings just leave it out.)
  if (rest.authenticate === true || tlsOptions === undefined) {
    const socket = net.connect({ host, port, allowHalfOpen: true, noDelay: true })
    // The authenticated mode runs its own TLS over the socket, with the options given.
    return wrapChannel(socket, { ...rest, role: 'client', tls: tlsOptions }, host)
  }
  return wrap(tls.connect(halfOpen({ host, port, ...tlsOptions })), { ...rest, role: 'client' })
}

function halfOpen (options: tls.ConnectionOptions): tls.ConnectionOptions {
  const withHalfOpen: tls.ConnectionOptions & Pick<net.SocketConstructorOpts, 'allowHalfOpen'> = { allowHalfOpen: true, ...options }
  return withHalfOpen
}

/** Answers one request: returns (or resolves with) the reply. */
export type Handler = (message: Buffer, channel: Channel) => Uint8Array | string | undefined | Promise<Uint8Array | string | undefined>

/** Options of {@link createServer}. */
export interface ServerOptions extends ChannelOptions {
  /**
   * Answers each request with its return value, in order; a handler that throws answers
   * `P2SN:UNEXPECTEDERROR`, as the reference does. Leave out to handle channels yourself.
   */
  handler?: Handler
  /**
   * Serve over TLS with these options (`key`, `cert`, …); plain TCP when left out. With
   * `authenticate`, these are TLS options of your own for the authenticated mode (`cert` of the
   * P2SN key signed by your CA, `ca` to check clients' certificates): see
   * {@link AuthenticationTlsOptions}.
   */
  tls?: tls.TlsOptions
  /**
   * Open connections at most, handshaking or not; more are closed at once, with
   * `'clientError'` `ERR_P2SN_SERVER_BUSY`. Default 10000.
   */
  maxConnections?: number
  /**
   * Handshakes under way at most. A new connection beyond it drops the oldest handshake still
   * under way (`'clientError'` `ERR_P2SN_SERVER_BUSY`), which does no more RSA work: a flood of
   * silent or stalled connections cannot keep real clients waiting for its timeouts, since a
   * real handshake takes milliseconds. Default 256.
   */
  maxPendingHandshakes?: number
}

/**
 * A P2SN server over TCP or TLS, shaped like `net.Server`.
 *
 * Events: `'listening'`; `'channel'` (channel, peer) when a client completes the handshake;
 * `'clientError'` (error, channel) when a connection fails before or after the handshake
 * (never fatal to the server); `'error'` for the listening socket; `'close'`.
 */
export class Server extends EventEmitter {
  /** The underlying `net.Server` or `tls.Server`. */
  readonly server: net.Server
  readonly #options: ServerOptions
  readonly #keyPair: Promise<KeyPair>
  readonly #channels = new Set<Channel>()
  /** True while listen() waits for the key pair; close() cancels it. */
  #starting = false

  // Limits: handshakes under way (oldest first), and the pool made for `workers`
  readonly #maxConnections: number
  readonly #maxPendingHandshakes: number
  /** The most blocks a message to or from a client may have (one with `strict`). */
  readonly #maxMessageBlocks: number
  readonly #handshaking = new Set<Channel>()
  /** A pool the server made for `workers`, closed with it (a pool given as `pool` is not). */
  readonly #ownPool: RsaPool | undefined

  /** Prefer {@link createServer}. */
  constructor (options: ServerOptions = {}, onChannel?: (channel: Channel, peer: PeerInfo) => void) {
    super()
    const checked = checkChannelOptions(options)
    this.#maxMessageBlocks = checked.maxMessageBlocks
    this.#maxConnections = checkLimit('maxConnections', options.maxConnections, DEFAULT_MAX_CONNECTIONS)
    this.#maxPendingHandshakes = checkLimit('maxPendingHandshakes', options.maxPendingHandshakes, DEFAULT_MAX_PENDING_HANDSHAKES, 1)
    // One pool for all channels, not one each.
    if (options.pool === undefined && options.workers !== undefined) this.#ownPool = new RsaPool({ workers: options.workers })
    const authenticated = options.authenticate === true
    const plainTls = authenticated ? undefined : options.tls
    // Plain TLS is the listening server's; the authenticated mode runs TLS in each channel.
    this.#options = { ...options, pool: options.pool ?? this.#ownPool, workers: undefined, tls: authenticated ? options.tls : undefined }
    // One key pair for every connection: generated once when none is given.
    this.#keyPair = loadKeys(checked.keyPair)
    this.#keyPair.catch(() => {})
    if (onChannel !== undefined) this.on('channel', onChannel)
    const onSocket = (socket: net.Socket): void => {
      // Half-open, so that a client that ends its side still gets its answers (see serve). Made
      // so here rather than with the server's allowHalfOpen option: a TLS socket half-open
      // during its TLS handshake never closes when its client hangs up then.
      socket.allowHalfOpen = true
      socket.setNoDelay(true)
      this.#accept(socket)
    }
    this.server = plainTls === undefined
      ? net.createServer(onSocket)
      : tls.createServer(plainTls, onSocket)
    this.server.on('listening', () => this.emit('listening'))
    this.server.on('error', (err) => this.emit('error', err))
    this.server.on('close', () => this.emit('close'))
    if (plainTls !== undefined) {
      this.server.on('tlsClientError', (err: Error) => this.emit('clientError', toP2snError(err, 'ERR_P2SN_CONNECTION', `a tls handshake failed: ${err.message}`)))
    }
  }

  /** The server's key pair (generated when none was given). */
  keyPair (): Promise<KeyPair> {
    return this.#keyPair
  }

  /** Starts listening, as `net.Server#listen`. */
  listen (port?: number, host?: string, callback?: () => void): this
  listen (port?: number, callback?: () => void): this
  listen (port?: number, host?: string | (() => void), callback?: () => void): this {
    if (typeof host === 'function') {
      callback = host
      host = undefined
    }
    if (callback !== undefined) this.once('listening', callback)
    this.#starting = true
    const start = (keyPair: KeyPair): void => {
      if (!this.#starting) return
      this.#starting = false
      try {
        // Fail now, not at every client, when TLS options of one's own cannot work with the key.
        if (this.#options.authenticate === true) authenticationContext(keyPair, this.#options.tls)
      } catch (err) {
        this.emit('error', err)
        return
      }
      this.server.listen(port, host as string | undefined)
    }
    // The key must exist before the first client is served.
    this.#keyPair.then(start, (err: unknown) => {
      if (!this.#starting) return
      this.#starting = false
      this.emit('error', err)
    })
    return this
  }

  /** Address bound, as `net.Server#address`. */
  address (): net.AddressInfo | string | null {
    return this.server.address()
  }

  /**
   * Stops accepting connections (or cancels a `listen()` still waiting for the key pair) and
   * closes the open channels; `callback` runs once all are gone.
   */
  close (callback?: (err?: Error) => void): this {
    if (this.#starting) {
      this.#starting = false
      this.server.close(() => callback?.())
    } else {
      this.server.close(callback)
    }
    for (const channel of this.#channels) channel.destroy()
    void this.#ownPool?.close()
    return this
  }

  /** The number of open connections, handshaking or not. */
  get connections (): number {
    return this.#channels.size
  }

  #accept (socket: net.Socket): void {
    if (this.connections >= this.#maxConnections) {
      socket.destroy()
      this.#clientError(new P2snError('ERR_P2SN_SERVER_BUSY', `refused a connection: the server has ${this.connections} open (maxConnections); the client may retry later`))
      return
    }
    if (this.#handshaking.size >= this.#maxPendingHandshakes) {
      const oldest = this.#handshaking.values().next().value!
      this.#handshaking.delete(oldest)
      oldest.destroy(new P2snError('ERR_P2SN_SERVER_BUSY', `dropped the oldest of ${this.#maxPendingHandshakes} handshakes under way (maxPendingHandshakes) to make room for a new connection; the server is flooded`))
    }
    const channel = wrap(socket, { ...this.#options, keyPair: this.#keyPair, role: 'server' })
    this.#channels.add(channel)
    this.#handshaking.add(channel)
    channel.on('close', () => {
      this.#channels.delete(channel)
      this.#handshaking.delete(channel)
    })
    channel.on('error', (err: Error) => { this.#clientError(err, channel) })
    channel.once('handshake', (peer: PeerInfo) => {
      this.#handshaking.delete(channel)
      if (this.#options.handler !== undefined) serve(channel, this.#options.handler, this.#maxMessageBlocks)
      this.emit('channel', channel, peer)
    })
  }

  #clientError (err: Error, channel?: Channel): void {
    if (this.listenerCount('clientError') > 0) this.emit('clientError', err, channel)
  }
}

/**
 * Creates a P2SN server. With `handler`, each request is answered with the handler's return
 * value; with `onChannel` (or the `'channel'` event) you get each channel once its handshake
 * completes.
 *
 * @example
 * const server = createServer({ keyPair, handler: (message) => message }).listen(7000)
 */
export function createServer (options: ServerOptions = {}, onChannel?: (channel: Channel, peer: PeerInfo) => void): Server {
  return new Server(options, onChannel)
}

/**
 * Answers each message on `channel` with `handler`'s reply, in order. A synchronous handler is
 * answered at once; while an asynchronous one works, or the channel's writes wait for
 * `'drain'`, the channel is paused, so the next request is not read before. A reply longer than
 * `maxBlocks` blocks of the client's key becomes `P2SN:UNEXPECTEDERROR` (see replyOf).
 */
function serve (channel: Channel, handler: Handler, maxBlocks: number): void {
  let answering: Promise<void> = Promise.resolve()
  const hold = (until: Promise<unknown>): void => {
    channel.pause()
    answering = until.then(() => { if (!channel.destroyed) channel.resume() }, (err: unknown) => { channel.destroy(err as Error) })
  }
  const send = (reply: Buffer): boolean => channel.destroyed || channel.writableEnded || channel.write(reply)
  channel.on('data', (message: Buffer) => {
    const reply = answer(channel, handler, message, maxBlocks)
    if (reply instanceof Promise) {
      hold(reply.then(async (bytes) => { if (!send(bytes)) await once(channel, 'drain') }))
    } else if (!send(reply)) {
      hold(once(channel, 'drain'))
    }
  })
  // Answers come in order, so once the client has ended and the last one is written, we are
  // done. 'end' comes right after the last 'data', pause or not: wait for its answer.
  channel.once('end', () => {
    void answering.then(() => { if (!channel.destroyed) channel.end() })
  })
}

/** The reply to one request: at once for a synchronous handler, else a Promise. */
function answer (channel: Channel, handler: Handler, message: Buffer, maxBlocks: number): Buffer | Promise<Buffer> {
  let result: ReturnType<Handler>
  try {
    result = handler(message, channel)
  } catch (err) {
    return failed(channel, err)
  }
  if (result instanceof Promise) {
    return result.then((value) => replyOf(channel, value, maxBlocks), (err: unknown) => failed(channel, err))
  }
  return replyOf(channel, result, maxBlocks)
}

/**
 * The handler's result as a reply. One that the client would refuse, longer than `maxBlocks`
 * blocks of its key (one with `strict`), becomes `P2SN:UNEXPECTEDERROR`, as the reference does
 * for a reply too long for its one block.
 */
function replyOf (channel: Channel, result: Uint8Array | string | undefined, maxBlocks: number): Buffer {
  try {
    const reply = result === undefined ? Buffer.alloc(0) : toBuffer(result)
    const room = channel.remotePublicKey!.maxBlockPlaintext
    if (reply.length > maxBlocks * room) {
      throw new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', maxBlocks === 1
        ? `the handler's ${reply.length}-byte reply does not fit one rsa block of the client's key`
        : `the handler's ${reply.length}-byte reply takes more than maxMessageBlocks (${maxBlocks}) rsa blocks of the client's key, more than it takes`)
    }
    return reply
  } catch (err) {
    return failed(channel, err)
  }
}

/** The answer to a failed handler, as the reference gives it; the failure goes to `'handlerError'`. */
function failed (channel: Channel, err: unknown): Buffer {
  channel.emit('handlerError', err)
  return UNEXPECTEDERROR
}
