/**
 * `createClient()`: a client that keeps one channel to a server open, reconnects with backoff
 * after it drops, and sends each request on whichever channel is up, never twice.
 * @module
 */
import { EventEmitter } from 'node:events'
import { checkLimit, toBuffer } from './arguments.js'
import type { Channel } from './channel.js'
import { connect, type ConnectOptions } from './connect.js'
import { P2snError, toP2snError } from './errors.js'
import type { WithEvents } from './events.js'
import { loadKeys, type PeerInfo } from './handshake-runner.js'
import { RsaPool } from './rsa-pool.js'
import { ownPoolFor, planChannel, shareOnePool } from './wrap.js'

/** `reconnect.initialDelay`'s default, in ms. */
const DEFAULT_INITIAL_DELAY = 100
/** `reconnect.maxDelay`'s default, in ms. */
const DEFAULT_MAX_DELAY = 10_000
/** `maxQueuedRequests`' default. */
const DEFAULT_MAX_QUEUED_REQUESTS = 1024
/** The longest a timer can wait (about 24.8 days); Node fires a longer one at once. */
const MAX_TIMER = 2 ** 31 - 1

/** Options of {@link createClient}: those of {@link connect}, and how to time out and reconnect. */
export interface ClientOptions extends ConnectOptions {
  /**
   * Milliseconds from the `request()` call until its reply must have come, the wait for a
   * channel and for the requests before it included. A request still waiting to go out then
   * fails with `ERR_P2SN_REQUEST_TIMEOUT` and `sent: false`; one that went out fails with
   * `sent: true`, and its channel is dropped (a late reply could not be told from the next
   * one's), so the client reconnects for the requests behind it. Default 0: none, and a request
   * waits for a server as long as it takes.
   */
  requestTimeout?: number
  /**
   * Requests waiting to go out at most: made while no channel is up, or waiting behind the one
   * in flight. A `request()` beyond it fails at once with `ERR_P2SN_CLIENT_BUSY` and
   * `sent: false`, so that a client whose server is down or slow does not buffer without bound
   * (each waiting request holds its message). 0: none waits, and a request goes out only on an
   * idle channel that is up. `Infinity`: no bound. Default 1024.
   */
  maxQueuedRequests?: number
  /**
   * Reconnect after the channel drops, fails to connect, or is ended by the server: `false`
   * turns it off (the requests waiting then fail with `ERR_P2SN_CLOSED`, `sent: false`).
   * Attempts back off exponentially with full jitter: the n-th retry in a row waits a random
   * time up to `initialDelay` × 2ⁿ⁻¹ ms, capped at `maxDelay`; a completed handshake starts the
   * count again. Default `true`: `{ initialDelay: 100, maxDelay: 10000 }`.
   */
  reconnect?: boolean | {
    /** The longest wait before the first attempt, in ms, doubled for each failure in a row. Default 100. */
    initialDelay?: number
    /** The longest wait before any attempt, in ms. Default 10000. */
    maxDelay?: number
  }
}

/** The events of a {@link Client}, with their listeners' arguments. */
export interface ClientEvents {
  /** A channel completed its handshake; requests go out on it now. */
  connect: [channel: Channel, peer: PeerInfo]
  /**
   * A channel closed, or an attempt to connect failed; `error` says why. The client reconnects
   * unless it is closed or `reconnect` is false. Never an `'error'` event: a server going away
   * is what this client is for.
   */
  disconnect: [error: Error]
}

/** A request waiting for a channel, or on one for its reply. */
interface PendingRequest {
  message: Buffer
  resolve: (reply: Buffer) => void
  reject: (err: P2snError) => void
  /** When its `requestTimeout` runs out (`Date.now()` ms), or Infinity. */
  deadline: number
  /** Its timeout while it waits to go out. */
  timer: NodeJS.Timeout | undefined
}

/** The channel up or being set up, and why it closed, once known. */
interface Connection {
  channel: Channel
  reason: Error | undefined
  /** When its handshake completed, if it did. */
  upAt?: number
  /** True once it carried a reply. */
  answered?: boolean
}

/** A copy of `reason` for one request that never went out (each request gets its own error). */
function unsent (reason: P2snError): P2snError {
  const err = new P2snError(reason.code, reason.message, { cause: reason.cause })
  err.sent = false
  return err
}

/**
 * A client of one P2SN server that survives its restarts: it keeps one channel open (made by
 * {@link connect}), reconnects with backoff and jitter after the channel drops, fails to
 * connect, or is ended by the server, and sends requests one at a time, in order, on whichever
 * channel is up. A request that never went out is sent on the next channel; one that went out
 * on a channel that then dropped fails with `ERR_P2SN_CLOSED` and `sent: true`, since it may
 * have run, and is never sent again.
 *
 * Events: `'connect'` (channel, peer) for each channel that completes its handshake;
 * `'disconnect'` (error) for each channel that closes or attempt that fails. It emits no
 * `'error'`: connection failures are `'disconnect'` events, so a server restart crashes no one.
 */
export class Client extends (EventEmitter as WithEvents<typeof EventEmitter, ClientEvents>) {
  /** What each channel is connected with: the key pair loaded once, one pool for all. */
  readonly #options: ConnectOptions
  /** 0: none. */
  readonly #requestTimeout: number
  /** Undefined: reconnect is off. */
  readonly #backoff: { initialDelay: number, maxDelay: number } | undefined
  /** Requests waiting to go out at most: more are refused unsent. */
  readonly #maxQueuedRequests: number
  /** The most blocks a request may have (one with `strict`): a longer one is refused unsent. */
  readonly #maxMessageBlocks: number
  /** A pool the client made for `workers`, closed with it (a pool given as `pool` is not). */
  #ownPool: RsaPool | undefined

  #connection: Connection | undefined
  /** Attempts since the last handshake: the backoff's exponent. */
  #attempts = 0
  #retryTimer: NodeJS.Timeout | undefined

  /** Requests that have not gone out, oldest first; then the one on the channel. */
  #queue: PendingRequest[] = []
  #inFlight: PendingRequest | undefined

  /** Why requests are refused now: the client is closed, or lost its channel with reconnect off. */
  #stopped: P2snError | undefined
  #closing: Promise<void> | undefined
  #closed: (() => void) | undefined

  /** Prefer {@link createClient}. */
  constructor (options: ClientOptions) {
    super()
    const { requestTimeout, reconnect, maxQueuedRequests } = options
    const timeout = checkLimit('requestTimeout', requestTimeout, 0)
    this.#maxQueuedRequests = checkLimit('maxQueuedRequests', maxQueuedRequests, DEFAULT_MAX_QUEUED_REQUESTS)
    // Beyond what a timer can wait: as good as none.
    this.#requestTimeout = timeout >= MAX_TIMER ? 0 : timeout
    this.#backoff = backoffOf(reconnect)
    checkLimit('keepAlive', options.keepAlive, Infinity)
    // The channels' options, checked as connect() checks them, before anything starts.
    const plan = planChannel(options, 'client', options.authenticate === true ? options.tls : undefined)
    this.#maxMessageBlocks = plan.maxMessageBlocks
    // One pool and one key pair for every channel: a key generated once keeps one identity.
    this.#ownPool = ownPoolFor(options)
    const keyPair = loadKeys(plan.keyPair)
    keyPair.catch(() => {})
    // What connect() reads, read by name as planChannel read it, with the client's one key pair
    // and pool.
    const settings = plan.options
    settings.keyPair = keyPair
    shareOnePool(settings, this.#ownPool)
    this.#options = { ...settings, host: options.host, port: options.port, tls: options.tls, keepAlive: options.keepAlive }
    let channel: Channel
    try {
      channel = connect(this.#options)
    } catch (err) {
      void this.#ownPool?.close()
      throw err
    }
    this.#open(channel)
  }

  /**
   * Sends one request and resolves with the server's reply. Requests go out one at a time, in
   * the order of the calls, on the channel that is up; while none is, they wait for the next.
   *
   * Every failure says in `err.sent` whether the request had gone out: `false`, it never left
   * and is safe to send again; `true`, it may have run on the server, and the client did not
   * send it again.
   *
   * @throws P2snError `ERR_P2SN_CLOSED` when the channel it went out on dropped before the reply
   *   (`sent: true`; the socket's error, if any, as `cause`), or when the client is closed or
   *   lost its channel with `reconnect: false` (`sent: false`); `ERR_P2SN_REQUEST_TIMEOUT` after
   *   `requestTimeout`; `ERR_P2SN_UNEXPECTED_ERROR` when the server's handler failed;
   *   `ERR_P2SN_MESSAGE_TOO_LONG` (`sent: false`) for a message longer than the server's key
   *   takes in `maxMessageBlocks` blocks; `ERR_P2SN_CLIENT_BUSY` (`sent: false`), at once, when
   *   `maxQueuedRequests` requests already wait to go out; `ERR_P2SN_INVALID_ARGUMENT` for a
   *   message that is not bytes or a string; a channel's other failure, with its code
   */
  request (message: Uint8Array | string): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const bytes = toBuffer(message)
      if (this.#stopped !== undefined) {
        reject(unsent(this.#stopped))
        return
      }
      const deadline = this.#requestTimeout === 0 ? Infinity : Date.now() + this.#requestTimeout
      const request: PendingRequest = { message: bytes, resolve, reject, deadline, timer: undefined }
      this.#queue.push(request)
      this.#arm(request)
      this.#next()
      // Checked once it has had its chance to go out at once: the bound is on those left waiting.
      if (this.#queue.length > this.#maxQueuedRequests && this.#queue.at(-1) === request) {
        this.#queue.pop()
        clearTimeout(request.timer)
        const err = new P2snError('ERR_P2SN_CLIENT_BUSY', `${this.#maxQueuedRequests} requests already wait to go out (maxQueuedRequests): no channel to the server is up, or requests come faster than it answers; this one was refused and never sent: send it again once some are answered, or raise maxQueuedRequests`)
        err.sent = false
        reject(err)
      }
    })
  }

  /**
   * Closes the client: stops reconnecting, fails the requests that have not gone out with
   * `ERR_P2SN_CLOSED` (`sent: false`), and ends the channel (`end()`, so the server sees
   * `'end'`), letting the request in flight get its reply or fail. Requests made after it fail
   * at once, the same way. Leaves no timer running. Resolves once the channel has closed (the
   * server ends its side once it has answered) and a pool made for `workers` is closed; a channel
   * whose server never answers stays open until `requestTimeout`, if set: to drop it at once,
   * destroy the channel that `'connect'` gave.
   */
  close (): Promise<void> {
    if (this.#closing === undefined) {
      this.#closing = new Promise((resolve) => { this.#closed = resolve })
      this.#stop(new P2snError('ERR_P2SN_CLOSED', 'the client is closed (close()); create a new one to send requests'))
      const channel = this.#connection?.channel
      if (channel !== undefined && !channel.writableEnded) {
        // Ended, not destroyed, so that the request in flight gets its reply; before the
        // handshake none is in flight, and there is nothing to end gracefully.
        if (channel.handshakeComplete) channel.end()
        else channel.destroy()
      }
      this.#release()
    }
    return this.#closing
  }

  // ---- Channels

  #open (channel: Channel): void {
    const connection: Connection = { channel, reason: undefined }
    this.#connection = connection
    channel.on('error', (err) => { connection.reason ??= err })
    channel.on('handshake', (peer) => {
      connection.upAt = Date.now()
      this.emit('connect', channel, peer)
      this.#next()
    })
    channel.on('end', () => {
      if (channel.writableEnded) return
      // The server ended first: it is draining or shutting down. End ours too, so that the
      // channel closes, and reconnect.
      connection.reason ??= new P2snError('ERR_P2SN_CLOSED', 'the server ended the channel (it is draining it, or shutting down)')
      channel.end()
    })
    channel.on('close', () => { this.#closedChannel(connection) })
    // Flowing from the start, so that a server ending an idle channel is seen at once: a paused
    // channel emits no 'end' until it is read. Replies are taken by channel.request().
    channel.resume()
  }

  #closedChannel (connection: Connection): void {
    if (this.#connection !== connection) return
    this.#connection = undefined
    // The backoff starts over only after a channel that was of use: one that carried a reply or
    // stayed up a while. A server that completes handshakes and drops them at once must not get
    // an attempt (and its RSA work) at every turn.
    const upAt = connection.upAt
    if (upAt !== undefined && (connection.answered === true || Date.now() - upAt >= (this.#backoff?.maxDelay ?? 0))) this.#attempts = 0
    const error = connection.reason ?? this.#stopped ??
      new P2snError('ERR_P2SN_CLOSED', 'this side dropped the channel: a request ran out of requestTimeout, or the channel was destroyed')
    if (this.#stopped === undefined && this.#backoff === undefined) {
      this.#stop(new P2snError('ERR_P2SN_CLOSED', 'the channel to the server closed and reconnect is off; create a new client to go on', { cause: error }))
    }
    if (this.#stopped === undefined) this.#retryLater()
    else this.#release()
    this.emit('disconnect', error)
  }

  /** The next attempt, after a random wait up to a ceiling that doubles with each attempt (full jitter). */
  #retryLater (): void {
    const { initialDelay, maxDelay } = this.#backoff!
    const ceiling = Math.min(maxDelay, initialDelay * 2 ** Math.min(this.#attempts, 40))
    this.#attempts++
    this.#retryTimer = setTimeout(() => { this.#retry() }, Math.min(Math.random() * ceiling, MAX_TIMER))
  }

  #retry (): void {
    this.#retryTimer = undefined
    let channel: Channel
    try {
      channel = connect(this.#options)
    } catch (err) {
      // Checked in the constructor, so not expected; but a timer must not throw: one more failure.
      this.#retryLater()
      this.emit('disconnect', toP2snError(err, 'ERR_P2SN_CONNECTION', `could not connect: ${err instanceof Error ? err.message : String(err)}`))
      return
    }
    this.#open(channel)
  }

  /** Once stopped and the last channel is gone: the pool made for `workers` is closed, and close() resolves. */
  #release (): void {
    if (this.#connection !== undefined) return
    const pool = this.#ownPool
    this.#ownPool = undefined
    const closed = this.#closed
    if (closed === undefined && pool === undefined) return
    this.#closed = undefined
    void Promise.resolve(pool?.close()).catch(() => {}).then(() => closed?.())
  }

  // ---- Requests

  /** Fails every request that has not gone out with `reason`, and every one made from now on. */
  #stop (reason: P2snError): void {
    this.#stopped = reason
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    for (const request of this.#queue.splice(0)) {
      clearTimeout(request.timer)
      request.reject(unsent(reason))
    }
  }

  /** Starts the timeout of a request waiting to go out, for what is left of its `requestTimeout`. */
  #arm (request: PendingRequest): void {
    if (request.deadline === Infinity) return
    request.timer = setTimeout(() => { this.#expired(request) }, Math.max(0, request.deadline - Date.now()))
  }

  #expired (request: PendingRequest): void {
    const at = this.#queue.indexOf(request)
    if (at === -1) return
    this.#queue.splice(at, 1)
    this.#timedOut(request)
    // A channel still in its handshake this long is stuck (a frozen server behind a balancer
    // that accepted for it): drop it, so that the next attempt may reach another server.
    const channel = this.#connection?.channel
    if (channel !== undefined && !channel.handshakeComplete) channel.destroy()
  }

  /** Fails a request whose `requestTimeout` ran out before it went out. */
  #timedOut (request: PendingRequest): void {
    clearTimeout(request.timer)
    const err = new P2snError('ERR_P2SN_REQUEST_TIMEOUT', `no reply within ${this.#requestTimeout} ms (requestTimeout): no channel to the server was up in time, or the requests before it took that long; it never went out, so it is safe to send again`)
    err.sent = false
    request.reject(err)
  }

  /** Sends the request first in line, if the channel is up and none is in flight. */
  #next (): void {
    const channel = this.#connection?.channel
    if (this.#inFlight !== undefined || channel === undefined || !channel.handshakeComplete) return
    // Ended by either side, or closing: the next channel takes the requests.
    if (channel.destroyed || channel.readableEnded || channel.writableEnded) return
    let request: PendingRequest | undefined
    while ((request = this.#queue.shift()) !== undefined) {
      clearTimeout(request.timer)
      const left = request.deadline - Date.now()
      if (left <= 0) {
        this.#timedOut(request)
        continue
      }
      // Refused here, unsent: the channel would fail on it, and drop with the request counted as sent.
      const room = this.#maxMessageBlocks * channel.remotePublicKey!.maxBlockPlaintext
      if (request.message.length > room) {
        const err = new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', `a ${request.message.length}-byte request takes more rsa blocks of the server's key than maxMessageBlocks (${this.#maxMessageBlocks}) lets a message have; it was not sent: send shorter messages, or raise maxMessageBlocks on both sides`)
        err.sent = false
        request.reject(err)
        continue
      }
      this.#send(channel, request, left)
      return
    }
  }

  #send (channel: Channel, request: PendingRequest, left: number): void {
    this.#inFlight = request
    const connection = this.#connection
    channel.request(request.message, left === Infinity ? {} : { timeout: Math.ceil(left) }).then((reply) => {
      this.#inFlight = undefined
      if (connection !== undefined) connection.answered = true
      request.resolve(reply)
      this.#next()
    }, (err: P2snError) => {
      this.#inFlight = undefined
      this.#failed(channel, request, err)
      this.#next()
    })
  }

  /** A request its channel failed: sent again on the next channel if it never left, else failed. */
  #failed (channel: Channel, request: PendingRequest, err: P2snError): void {
    if (err.code === 'ERR_P2SN_REQUEST_TIMEOUT') {
      const timeout = new P2snError('ERR_P2SN_REQUEST_TIMEOUT', `no reply within ${this.#requestTimeout} ms (requestTimeout)${err.sent === true ? '' : ' (the request never went out)'}; the channel was dropped, since a late reply could not be told from the next one's, and the client reconnects for the requests behind it`, { cause: err })
      timeout.sent = err.sent
      request.reject(timeout)
      return
    }
    const dropped = channel.destroyed || channel.readableEnded || channel.writableEnded
    if (err.sent === false && dropped && this.#stopped === undefined) {
      // It never left: first in line again, for the next channel.
      this.#queue.unshift(request)
      this.#arm(request)
      return
    }
    if (err.sent === true && err.code === 'ERR_P2SN_CONNECTION') {
      // The socket failed under it (a reset): the channel dropped, as when the server hangs up.
      const closed = new P2snError('ERR_P2SN_CLOSED', 'the connection dropped before the reply came; the request may have run on the server, so it was not sent again', { cause: err.cause ?? err })
      closed.sent = true
      request.reject(closed)
      return
    }
    request.reject(err)
  }
}

/** `reconnect` checked: its delays, or undefined when it is off. */
function backoffOf (reconnect: ClientOptions['reconnect']): { initialDelay: number, maxDelay: number } | undefined {
  if (reconnect === false) return undefined
  if (reconnect === undefined || reconnect === true) return { initialDelay: DEFAULT_INITIAL_DELAY, maxDelay: DEFAULT_MAX_DELAY }
  if (typeof reconnect !== 'object' || reconnect === null) {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `reconnect must be true, false or { initialDelay, maxDelay }, not ${String(reconnect)}`)
  }
  // At least 1 ms, so that attempts against a server that is down back off rather than spin.
  const initialDelay = checkLimit('reconnect.initialDelay', reconnect.initialDelay, DEFAULT_INITIAL_DELAY, 1)
  const maxDelay = checkLimit('reconnect.maxDelay', reconnect.maxDelay, Math.max(DEFAULT_MAX_DELAY, initialDelay), initialDelay)
  return { initialDelay, maxDelay }
}

/**
 * Creates a {@link Client} of the server at `host`:`port`, which connects at once and keeps one
 * channel open, reconnecting after it drops.
 *
 * @example
 * const client = createClient({ host: 'localhost', port: 7000, keyPair, requestTimeout: 5000 })
 * client.on('disconnect', (err) => console.log('reconnecting:', err.message))
 * console.log((await client.request('hello')).toString())
 * await client.close()
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` (or the key's error) for options that cannot work
 */
export function createClient (options: ClientOptions): Client {
  return new Client(options)
}
