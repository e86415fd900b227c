/**
 * The P2SN server: accepts TCP or TLS connections, wraps each in a {@link Channel} as the
 * server, keeps the limits on connections and handshakes, and answers requests with a handler
 * the reference's way.
 * @module
 */
import { EventEmitter, once } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'
import { checkLimit, keepAliveDelay, toBuffer } from './arguments.js'
import { authenticationContext } from './authentication.js'
import type { Channel, ChannelOptions, ChannelPlan, ChannelSetup } from './channel.js'
import { P2snError, toP2snError } from './errors.js'
import type { WithEvents } from './events.js'
import { loadKeys, type PeerInfo } from './handshake-runner.js'
import type { KeyPair } from './keys.js'
import { DEFAULT_DRAIN_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_HANDSHAKES, KEYWORD_UNEXPECTEDERROR } from './protocol.js'
import { ProxyHeaderDecoder, type ProxyHeader } from './proxy-protocol.js'
import { RsaPool } from './rsa-pool.js'
import { channelOptions, openChannel, ownPoolFor, planChannel, shareOnePool } from './wrap.js'

const UNEXPECTEDERROR = Buffer.from(KEYWORD_UNEXPECTEDERROR)

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
   * `'clientError'` `ERR_P2SN_SERVER_BUSY`. With plain `tls`, a connection counts once its TLS
   * handshake is done: until then only Node's TLS `handshakeTimeout` (120 s unless set in
   * `tls`) bounds it. Default 10000.
   */
  maxConnections?: number
  /**
   * Handshakes under way at most. A new connection beyond it drops the oldest handshake still
   * under way (`'clientError'` `ERR_P2SN_SERVER_BUSY`), which does no more RSA work: a flood of
   * silent or stalled connections cannot keep real clients waiting for its timeouts, since a
   * real handshake takes milliseconds. Default 256.
   */
  maxPendingHandshakes?: number
  /**
   * Milliseconds that `close()` lets the open channels finish (see {@link Server.close}) before
   * it destroys those still open. Default {@link DEFAULT_DRAIN_TIMEOUT} (10 s).
   */
  drainTimeout?: number
  /**
   * TCP keepalive for every connection: the idle time in ms before the first probe, so that a
   * load balancer's or NAT's idle timeout does not cut a quiet channel silently (set it below
   * theirs). Whole seconds: 1–999 ms count as 1 s, and 0 is the system's own delay. Default:
   * off (`Infinity` too).
   */
  keepAlive?: number
  /**
   * Read a PROXY protocol header (v1 or v2, as HAProxy's `send-proxy` / `send-proxy-v2`, nginx
   * and cloud load balancers send it) before each connection's handshake, and take the client's
   * address from it (`channel.remoteAddress`, `peer.remoteAddress`). A connection without a valid
   * header is refused (`'clientError'` `ERR_P2SN_PROXY_PROTOCOL`); the header has the handshake
   * timeout to arrive, and is refused as soon as its first bytes cannot start one or it grows
   * past its limit. Turn it on only behind a proxy that always sends it: anyone who can connect
   * straight could claim any address. Not with plain `tls` (the header comes before TLS:
   * terminate TLS at the proxy). With `authenticate`, the authenticated mode's TLS starts with
   * the bytes after the header (the proxy passes TLS through, as in HAProxy's `mode tcp`), and
   * what TLS proves is the client's key, whatever address the header claims. Default `false`.
   */
  proxyProtocol?: boolean
}

/** The events of a {@link Server}. */
export interface ServerEvents {
  /** The server listens. */
  listening: []
  /** A client completed the handshake. */
  channel: [channel: Channel, peer: PeerInfo]
  /**
   * A connection failed, before or after its handshake (never fatal to the server): a
   * {@link P2snError}, or the error a channel was destroyed with.
   */
  clientError: [error: Error, channel: Channel | undefined]
  /** The listening socket failed. */
  error: [error: Error]
  /** The server closed. */
  close: []
}

/**
 * A P2SN server over TCP or TLS, shaped like `net.Server`.
 *
 * Events: `'listening'`; `'channel'` (channel, peer) when a client completes the handshake;
 * `'clientError'` (error, channel) when a connection fails before or after the handshake
 * (never fatal to the server); `'error'` for the listening socket; `'close'`.
 */
export class Server extends (EventEmitter as WithEvents<typeof EventEmitter, ServerEvents>) {
  /** The underlying `net.Server` or `tls.Server`. */
  readonly server: net.Server
  readonly #handler: Handler | undefined
  readonly #keyPair: Promise<KeyPair>
  /**
   * The channels open, each with its socket and the PROXY header's length before its stream, to
   * tell a probe (a connection that closed without a byte of P2SN) from a client. A Map whose
   * entries go with 'close', not a WeakMap, whose entries every garbage collection must treat
   * as ephemerons.
   */
  readonly #channels = new Map<Channel, { socket: net.Socket, skipped: number }>()
  /** True while listen() waits for the key pair; close() cancels it. */
  #starting = false
  /** Set by the first close(): no connection is accepted, and the channels are drained. */
  #closing = false
  #drainTimer: NodeJS.Timeout | undefined
  readonly #drainTimeout: number
  readonly #keepAlive: number | undefined
  readonly #proxyProtocol: boolean
  readonly #handshakeTimeout: number
  /**
   * Connections still sending their PROXY header, oldest first, each with what drops it quietly:
   * counted as connections and as handshakes under way.
   */
  readonly #preludes = new Map<net.Socket, () => void>()

  // Limits: handshakes under way (oldest first), and the pool made for `workers`
  readonly #maxConnections: number
  readonly #maxPendingHandshakes: number
  /** The most blocks a message to or from a client may have (one with `strict`). */
  readonly #maxMessageBlocks: number
  readonly #handshaking = new Set<Channel>()
  /** What every connection's channel is opened from. */
  readonly #plan: ChannelPlan
  /** A pool the server made for `workers`, closed with it (a pool given as `pool` is not). */
  readonly #ownPool: RsaPool | undefined

  /** Prefer {@link createServer}. */
  constructor (options: ServerOptions = {}, onChannel?: (channel: Channel, peer: PeerInfo) => void) {
    super()
    const authenticated = options.authenticate === true
    // Checked before anything is made (plain TLS is the listening server's, not the channels').
    const plan = planChannel(options, 'server', authenticated ? options.tls : undefined)
    this.#maxMessageBlocks = plan.maxMessageBlocks
    this.#maxConnections = checkLimit('maxConnections', options.maxConnections, DEFAULT_MAX_CONNECTIONS)
    this.#maxPendingHandshakes = checkLimit('maxPendingHandshakes', options.maxPendingHandshakes, DEFAULT_MAX_PENDING_HANDSHAKES, 1)
    this.#drainTimeout = checkLimit('drainTimeout', options.drainTimeout, DEFAULT_DRAIN_TIMEOUT)
    this.#keepAlive = keepAliveDelay(options.keepAlive)
    this.#proxyProtocol = options.proxyProtocol === true
    if (this.#proxyProtocol && !authenticated && options.tls !== undefined) {
      throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'proxyProtocol does not work with plain tls, whose handshake would come before the header; terminate tls at the proxy')
    }
    // Checked by planChannel above.
    this.#handshakeTimeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT
    // One pool for all channels, not one each.
    this.#ownPool = ownPoolFor(options)
    const plainTls = authenticated ? undefined : options.tls
    this.#handler = options.handler
    // The channels' options, read by name as planChannel read them (plain TLS is the listening
    // server's; the authenticated mode runs TLS in each channel), with the server's one pool.
    const settings = plan.options
    shareOnePool(settings, this.#ownPool)
    // One key pair for every connection: generated once when none is given.
    this.#keyPair = loadKeys(plan.keyPair)
    this.#keyPair.catch(() => {})
    // Every connection's channel is opened from one plan, its options checked here once; with
    // the key pair itself once it is there.
    const channels: ChannelPlan = this.#plan = {
      options: settings,
      keyPair: this.#keyPair,
      maxFrameLength: plan.maxFrameLength,
      maxMessageBlocks: plan.maxMessageBlocks
    }
    this.#keyPair.then((keyPair) => { channels.keyPair = keyPair }, () => {})
    if (onChannel !== undefined) this.on('channel', onChannel)
    const onSocket = (socket: net.Socket): void => {
      // Half-open, so that a client that ends its side still gets its answers (see serve). Made
      // so here rather than with the server's allowHalfOpen option: a TLS socket half-open
      // during its TLS handshake never closes when its client hangs up then.
      socket.allowHalfOpen = true
      socket.setNoDelay(true)
      if (this.#keepAlive !== undefined) socket.setKeepAlive(true, this.#keepAlive)
      this.#accept(socket)
    }
    this.server = plainTls === undefined
      ? net.createServer(onSocket)
      : tls.createServer(plainTls, onSocket)
    this.server.on('listening', () => this.emit('listening'))
    this.server.on('error', (err) => this.emit('error', err))
    // Once: net.Server emits it again for each close() after the first.
    this.server.once('close', () => this.emit('close'))
    if (plainTls !== undefined) {
      this.server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
        // Node reports a TLS handshake that failed or timed out, but leaves its socket open.
        socket.destroy()
        this.emit('clientError', toP2snError(err, 'ERR_P2SN_CONNECTION', `a tls handshake failed: ${err.message}`))
      })
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
        if (this.#plan.options.authenticate === true) authenticationContext(keyPair, this.#plan.options.tls)
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
   * Drains the server: stops accepting connections at once (or cancels a `listen()` still
   * waiting for the key pair), drops the handshakes under way, and lets the open channels
   * finish. With a `handler`, each channel answers the requests it has read, then is ended
   * (a half-close: the client sees `'end'`, and a request it sends after that is not run).
   * Read means received whole from the connection by the time of `close()`: those waiting for
   * the handler, being decrypted, or still uncut while the channel pushes back (see
   * {@link Channel.messagesPending}); a request not yet whole then is not run either. A
   * channel you serve yourself is ended at once, its writes still going out. The channels still
   * open after `drainTimeout` are destroyed. `callback` runs once every connection is gone, and
   * a second `close()`, or {@link Server.destroy}, closes everything at once.
   */
  close (callback?: (err?: Error) => void): this {
    if (this.#closing) {
      this.destroy()
      // As net.Server's: once every connection is gone (at once if they are), with
      // ERR_SERVER_NOT_RUNNING since the server stopped listening at the first close().
      this.server.close(callback)
      return this
    }
    this.#closing = true
    const done = (err?: Error): void => {
      clearTimeout(this.#drainTimer)
      void this.#ownPool?.close()
      callback?.(err)
    }
    if (this.#starting) {
      this.#starting = false
      this.server.close(() => { done() })
    } else {
      this.server.close(done)
    }
    for (const drop of this.#preludes.values()) drop()
    for (const channel of this.#channels.keys()) {
      if (this.#handshaking.has(channel)) channel.destroy()
      else if (this.#handler !== undefined) drain(channel)
      else if (!channel.writableEnded) channel.end()
    }
    if (this.#channels.size > 0) {
      this.#drainTimer = setTimeout(() => { this.destroy() }, this.#drainTimeout)
      // The channels keep the process alive while they drain; the deadline alone does not.
      this.#drainTimer.unref()
    }
    return this
  }

  /** Closes the server and every channel at once, as `close()` does after `drainTimeout`. */
  destroy (): this {
    if (!this.#closing) this.close()
    clearTimeout(this.#drainTimer)
    for (const drop of this.#preludes.values()) drop()
    for (const [channel, { socket }] of this.#channels) {
      channel.destroy()
      // At once: a channel destroyed after end() would let its socket linger for its last frames.
      socket.destroy()
    }
    return this
  }

  /** The number of open connections, handshaking or not. */
  get connections (): number {
    return this.#channels.size + this.#preludes.size
  }

  #accept (socket: net.Socket): void {
    if (this.#closing) {
      socket.destroy()
      return
    }
    if (this.connections >= this.#maxConnections) {
      socket.destroy()
      this.#clientError(new P2snError('ERR_P2SN_SERVER_BUSY', `refused a connection: the server has ${this.connections} open (maxConnections); the client may retry later`))
      return
    }
    if (this.#handshaking.size + this.#preludes.size >= this.#maxPendingHandshakes) {
      const busy = new P2snError('ERR_P2SN_SERVER_BUSY', `dropped the oldest of ${this.#maxPendingHandshakes} handshakes under way (maxPendingHandshakes) to make room for a new connection; the server is flooded`)
      // A connection still sending its PROXY header goes first: it has cost nothing yet.
      const drop = this.#preludes.values().next().value
      if (drop !== undefined) {
        drop()
        this.#clientError(busy)
      } else {
        const oldest = this.#handshaking.values().next().value!
        this.#handshaking.delete(oldest)
        oldest.destroy(busy)
      }
    }
    if (this.#proxyProtocol) this.#readProxyHeader(socket)
    else this.#open(socket, undefined)
  }

  /**
   * Reads the PROXY header off `socket`, then opens its channel with the bytes after it and the
   * client's address; refuses the connection when the header is bad, late or missing.
   */
  #readProxyHeader (socket: net.Socket): void {
    const started = Date.now()
    const timeout = this.#handshakeTimeout
    this.#preludes.set(socket, readProxyHeader(socket, timeout, 'handshakeTimeout', (header) => {
      this.#preludes.delete(socket)
      const remote = header.sourceAddress === undefined ? undefined : { address: header.sourceAddress, port: header.sourcePort }
      // The header and the handshake share one handshakeTimeout: the channel gets what is left.
      const left = timeout > 0 && timeout !== Infinity ? Math.max(1, timeout - (Date.now() - started)) : undefined
      this.#open(socket, remote, header.length, left)
    }, (err) => {
      this.#preludes.delete(socket)
      // A probe that connected and left without a byte is no failure worth telling.
      if (err !== undefined && socket.bytesRead > 0) this.#clientError(err)
    }))
  }

  /**
   * Opens the channel of a connection; with a PROXY header, `remote` is the client's address,
   * `skipped` the header's length and `handshakeTimeout` what is left of the timeout.
   */
  #open (socket: net.Socket, remote: ChannelSetup['remote'], skipped = 0, handshakeTimeout?: number): void {
    let plan = this.#plan
    if (handshakeTimeout !== undefined) {
      // Copied by name, as every channel's options are (see EveryOption).
      const options = channelOptions(plan.options, 'server', plan.options.tls)
      options.handshakeTimeout = handshakeTimeout
      plan = { options, keyPair: plan.keyPair, maxFrameLength: plan.maxFrameLength, maxMessageBlocks: plan.maxMessageBlocks }
    }
    const channel = openChannel(socket, plan, { remote, ownSocket: true })
    this.#channels.set(channel, { socket, skipped })
    this.#handshaking.add(channel)
    const listeners = this.#channelListeners
    channel.on('close', listeners.close)
    channel.on('error', listeners.error)
    channel.on('handshake', listeners.handshake)
  }

  /**
   * The listeners every channel of this server gets: the same three functions for all (the
   * channel is their `this`), not three closures per connection.
   */
  readonly #channelListeners = ((server: Server) => ({
    close (this: Channel): void {
      server.#channels.delete(this)
      server.#handshaking.delete(this)
    },
    error (this: Channel, err: Error): void {
      // A connection that closed before sending a byte is a probe (a load balancer's or
      // orchestrator's TCP check, nc -z), not a client that failed: nothing to report.
      if (isProbe(err, server.#channels.get(this))) return
      server.#clientError(err, this)
    },
    handshake (this: Channel, peer: PeerInfo): void {
      server.#handshaking.delete(this)
      const handler = server.#handler
      if (handler !== undefined) serve(this, handler, server.#maxMessageBlocks)
      server.emit('channel', this, peer)
    }
  }))(this)

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
 * Reads a PROXY protocol header off `socket` before its stream, for servers with
 * `proxyProtocol` and for `p2sn listen --proxy-protocol`. Calls `onHeader` once the header is
 * whole, the bytes after it put back into the socket, which reads on; or `onFail` once it cannot
 * be (`ERR_P2SN_PROXY_PROTOCOL`: a bad header, an end, close or error first, `timeoutMs` passed;
 * `undefined` when dropped by the function returned), the socket then destroyed.
 * @param timeoutName - what sets `timeoutMs`, for the message
 * @internal
 */
export function readProxyHeader (socket: net.Socket, timeoutMs: number, timeoutName: string, onHeader: (header: ProxyHeader) => void, onFail: (err: P2snError | undefined) => void): () => void {
  const decoder = new ProxyHeaderDecoder()
  const settle = (): void => {
    clearTimeout(timer)
    socket.removeListener('data', onData)
    socket.removeListener('end', onEnd)
    socket.removeListener('error', onError)
    socket.removeListener('close', onClose)
  }
  const refuse = (err: P2snError | undefined): void => {
    settle()
    socket.destroy()
    onFail(err)
  }
  const missing = (what: string): P2snError => new P2snError('ERR_P2SN_PROXY_PROTOCOL', `${what} before its proxy protocol header; it must come through the proxy`)
  const onData = (chunk: Buffer): void => {
    let header: ProxyHeader | undefined
    try {
      header = decoder.write(chunk)
    } catch (err) {
      refuse(err as P2snError)
      return
    }
    if (header === undefined) return
    settle()
    // The P2SN stream's first bytes go back to the socket for the channel, which reads on.
    socket.pause()
    if (header.rest.length > 0) socket.unshift(header.rest)
    onHeader(header)
    // A channel reads on; the authenticated mode's TLS takes the socket later, with what is
    // buffered in it (Node's TLSSocket reads it first), so it stays paused until then: flowing
    // with no reader would drop those bytes.
    if (socket.listenerCount('data') > 0) socket.resume()
  }
  const onEnd = (): void => {
    try {
      decoder.end()
      refuse(missing('the connection ended'))
    } catch (err) {
      refuse(err as P2snError)
    }
  }
  const onError = (err: Error): void => {
    refuse(new P2snError('ERR_P2SN_PROXY_PROTOCOL', `the connection failed before its proxy protocol header came: ${err.message}`, { cause: err }))
  }
  const onClose = (): void => { refuse(missing('the connection closed')) }
  const timer = timeoutMs > 0 && timeoutMs !== Infinity
    ? setTimeout(() => { refuse(new P2snError('ERR_P2SN_PROXY_PROTOCOL', `no complete proxy protocol header within ${timeoutMs} ms (${timeoutName}); the connection must come through the proxy`)) }, timeoutMs)
    : undefined
  socket.on('data', onData)
  socket.once('end', onEnd)
  socket.once('error', onError)
  socket.once('close', onClose)
  return () => { refuse(undefined) }
}

/**
 * A connection that ended or failed before its peer sent a single byte of P2SN: a TCP probe.
 * One that leaves right after step 2 is still reported: a health check does so, but so does a
 * client that refused this server's key (pinned to another, say after a key rotation), which an
 * operator must hear of. `p2sn listen` tells the two apart in its log.
 */
function isProbe (err: Error, connection: { socket: net.Socket, skipped: number } | undefined): boolean {
  return err instanceof P2snError && (err.code === 'ERR_P2SN_CLOSED' || err.code === 'ERR_P2SN_CONNECTION') &&
    connection !== undefined && connection.socket.bytesRead === connection.skipped
}

/** The answers still under way on a served channel, if any. */
const answering = new WeakMap<Channel, Promise<void>>()
/** Draining channels: how many of the requests they had read when close() came are still to answer. */
const draining = new WeakMap<Channel, number>()

/**
 * Lets a served channel answer the requests it has read (its `messagesPending`: those buffered
 * in it, those still being decrypted, and those received whole but still uncut while it pushes
 * back), then ends it; a request read after that is not run, since its reply could not go out.
 */
function drain (channel: Channel): void {
  if (draining.has(channel) || channel.writableEnded) return
  draining.set(channel, channel.messagesPending)
  endWhenAnswered(channel)
}

/** Ends a draining channel once nothing it read is left to answer. */
function endWhenAnswered (channel: Channel): void {
  if (draining.get(channel) !== 0) return
  void (answering.get(channel) ?? Promise.resolve()).then(() => {
    if (!channel.destroyed && !channel.writableEnded) channel.end()
  })
}

/**
 * Answers each message on `channel` with `handler`'s reply, in order. A synchronous handler is
 * answered at once; while an asynchronous one works, or the channel's writes wait for
 * `'drain'`, the channel is paused, so the next request is not read before. A reply longer than
 * `maxBlocks` blocks of the client's key becomes `P2SN:UNEXPECTEDERROR` (see replyOf).
 */
function serve (channel: Channel, handler: Handler, maxBlocks: number): void {
  // No closures beyond the two listeners: a server holds one such pair per idle channel.
  channel.on('data', (message: Buffer) => {
    const left = draining.get(channel)
    // Read after a drain's last answer: its reply could not go out, so it is not run.
    if (left === 0 || channel.writableEnded) return
    const reply = answer(channel, handler, message, maxBlocks)
    let until: Promise<unknown> | undefined
    if (reply instanceof Promise) until = reply.then(async (bytes) => { if (!sendReply(channel, bytes)) await once(channel, 'drain') })
    else if (!sendReply(channel, reply)) until = once(channel, 'drain')
    if (until !== undefined) {
      channel.pause()
      answering.set(channel, until.then(() => { if (!channel.destroyed) channel.resume() }, (err: unknown) => { channel.destroy(err as Error) }))
    }
    if (left !== undefined) {
      draining.set(channel, left - 1)
      endWhenAnswered(channel)
    }
  })
  // Answers come in order, so once the client has ended and the last one is written, we are
  // done. 'end' comes right after the last 'data', pause or not: wait for its answer.
  channel.on('end', () => {
    void (answering.get(channel) ?? Promise.resolve()).then(() => { if (!channel.destroyed && !channel.writableEnded) channel.end() })
  })
}

/** Writes a reply unless the channel can take none; false when it must drain first. */
function sendReply (channel: Channel, reply: Buffer): boolean {
  return channel.destroyed || channel.writableEnded || channel.write(reply)
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
