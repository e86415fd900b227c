/**
 * One connection of `p2sn scan` to the server under test: frames sent as the probe says, with
 * no protocol logic of ours in the way, and what comes back observed as events: a frame, the
 * server closing, or silence until a deadline. Plain TCP, or the authenticated mode's TLS.
 * @module
 */
import net from 'node:net'
import type tls from 'node:tls'
import type { KeyObject } from 'node:crypto'
import { authenticate } from '../authentication.js'
import { FrameDecoder } from '../core/frame-decoder.js'
import { encodeFrame } from '../core/frame-encoder.js'
import { P2snError } from '../errors.js'
import type { KeyPair } from '../keys.js'

/**
 * The longest frame a probe takes from the server. The scanner talks to servers it does not
 * trust: a server key of 16384 bits in Base64 PEM is under 4 KiB, and a reply of 32 blocks of
 * such a key under 1 MiB.
 */
export const MAX_PROBE_FRAME_LENGTH = 1024 * 1024

/**
 * Events a connection keeps for a probe that has not asked yet, and their frames' bytes: past
 * either, it stops reading the socket until the probe takes them, so that a server flooding
 * frames costs the scanner no more memory than this.
 */
const MAX_QUEUED_EVENTS = 64
const MAX_QUEUED_BYTES = 2 * 1024 * 1024

/** What the server did next, and how long after the probe began to wait for it. */
export type ProbeEvent =
  | { kind: 'frame', frame: Buffer, ms: number }
  | { kind: 'closed', ms: number, reset: boolean }
  | { kind: 'silence', ms: number }
  | { kind: 'overlong', ms: number }

/** Where to connect, and how. */
export interface ProbeTarget {
  host: string
  port: number
  /** How long to wait for the connection, and by default for each answer, in ms. */
  timeout: number
  /** Run the authenticated mode's TLS 1.3 under the frames, with this key pair's certificate. */
  authKeys?: KeyPair
}

/** Counts kept across every connection of one scan: the evidence of what was sent. */
export interface ProbeTally {
  connections: number
  bytesSent: number
}

/** What TLS proved, in the authenticated mode. */
export interface ProbeTls {
  version: string
  peerKey: KeyObject
}

/**
 * A connection under the scanner's control. {@link send} writes a frame as given;
 * {@link next} resolves with the next thing the server did, or `silence` at the deadline.
 */
export class ProbeConnection {
  readonly tls: ProbeTls | undefined
  readonly #socket: net.Socket | tls.TLSSocket
  readonly #tally: ProbeTally
  readonly #timeout: number
  readonly #decoder = new FrameDecoder({ maxFrameLength: MAX_PROBE_FRAME_LENGTH })
  // Frames and the close, in the order they came, and the probe waiting for them
  readonly #events: ProbeEvent[] = []
  #queuedBytes = 0
  // Chunks that came while the decoder still held frames of an earlier one
  readonly #backlog: Buffer[] = []
  #waiter: ((event: ProbeEvent) => void) | undefined
  // Closed: the server ended its side or the socket closed; gone: the socket closed
  #closed = false
  #gone = false
  #reset = false
  #since = performance.now()

  private constructor (socket: net.Socket | tls.TLSSocket, tally: ProbeTally, timeout: number, tlsInfo: ProbeTls | undefined) {
    this.#socket = socket
    this.#tally = tally
    this.#timeout = timeout
    this.tls = tlsInfo
    socket.on('data', (chunk: Buffer) => { this.#onData(chunk) })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') this.#reset = true
    })
    socket.on('end', () => { this.#onClose() })
    socket.on('close', () => {
      this.#gone = true
      this.#onClose()
    })
  }

  /**
   * Connects to `target` (and runs TLS in the authenticated mode).
   * @throws P2snError `ERR_P2SN_CONNECTION` when no connection could be made in time,
   *   `ERR_P2SN_AUTHENTICATION` when the TLS handshake fails
   */
  static async open (target: ProbeTarget, tally: ProbeTally): Promise<ProbeConnection> {
    tally.connections++
    const socket = await tcpConnect(target)
    if (target.authKeys === undefined) return new ProbeConnection(socket, tally, target.timeout, undefined)
    const authentication = authenticate(socket, 'client', Promise.resolve(target.authKeys))
    const timer = setTimeout(() => { authentication.abort() }, target.timeout)
    try {
      const { socket: tlsSocket, peerKey } = await authentication.ready
      return new ProbeConnection(tlsSocket, tally, target.timeout, { version: tlsSocket.getProtocol() ?? 'unknown', peerKey })
    } catch (err) {
      // Options TLS cannot use fail before any TLS socket owns the connection: let it go here.
      socket.destroy()
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  /** Sends `frame` and its terminator. */
  send (frame: Uint8Array | string): void {
    this.write(encodeFrame(frame))
  }

  /** Sends bytes as they are. */
  write (bytes: Buffer): boolean {
    if (this.#socket.destroyed || this.#socket.writableEnded) return false
    this.#tally.bytesSent += bytes.length
    this.#since = performance.now()
    return this.#socket.write(bytes)
  }

  /**
   * The next thing the server did since the last {@link send}: a frame, its close, a frame over
   * {@link MAX_PROBE_FRAME_LENGTH}, or silence once `timeout` ms have passed.
   */
  async next (timeout = this.#timeout): Promise<ProbeEvent> {
    const queued = this.#events.shift()
    if (queued !== undefined) {
      this.#dequeued(queued)
      return queued
    }
    return await new Promise<ProbeEvent>((resolve) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined
        resolve({ kind: 'silence', ms: this.#elapsed() })
      }, timeout)
      this.#waiter = (event) => {
        clearTimeout(timer)
        this.#waiter = undefined
        resolve(event)
      }
    })
  }

  /** The events that came while no probe waited for them, oldest first; they are then forgotten. */
  takeQueued (): ProbeEvent[] {
    const events = this.#events.splice(0)
    for (const event of events) this.#dequeued(event)
    return events
  }

  /** True once the server closed (or reset) the connection. */
  get closed (): boolean {
    return this.#closed
  }

  /** True once the socket itself closed: the server reset it, or closed it after its end. */
  get gone (): boolean {
    return this.#gone
  }

  /** Resolves true once the socket has closed, or false after `timeout` ms. */
  async goneWithin (timeout: number): Promise<boolean> {
    if (this.#gone) return true
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.#socket.removeListener('close', onClose)
        resolve(false)
      }, Math.max(0, timeout))
      const onClose = (): void => {
        clearTimeout(timer)
        resolve(true)
      }
      this.#socket.once('close', onClose)
    })
  }

  /** Whether the close was a reset (ECONNRESET, EPIPE) rather than an orderly end. */
  get reset (): boolean {
    return this.#reset
  }

  /**
   * Sends bytes as they are and waits until the system has taken them, or `timeout` ms: true
   * when taken, false when the connection closed or the server stopped reading (the bytes then
   * sit in our buffer). Waiting on each write is what lets a close be seen between two of them.
   */
  async writeAndWait (bytes: Buffer, timeout: number): Promise<boolean> {
    if (this.#gone || this.#socket.destroyed) return false
    this.#tally.bytesSent += bytes.length
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { resolve(false) }, timeout)
      this.#socket.write(bytes, (err) => {
        clearTimeout(timer)
        resolve(err === undefined || err === null ? !this.#gone : false)
      })
    })
  }

  /** Ends the probe's side at once. */
  destroy (): void {
    this.#socket.destroy()
  }

  #elapsed (): number {
    return performance.now() - this.#since
  }

  #emit (event: ProbeEvent): void {
    if (this.#waiter !== undefined) {
      this.#waiter(event)
      return
    }
    this.#events.push(event)
    if (event.kind === 'frame') this.#queuedBytes += event.frame.length
  }

  #dequeued (event: ProbeEvent): void {
    if (event.kind === 'frame') this.#queuedBytes -= event.frame.length
    if (!this.#socket.isPaused() || this.#events.length >= MAX_QUEUED_EVENTS / 2 || this.#queuedBytes >= MAX_QUEUED_BYTES / 2) return
    this.#cut()
    if (!this.#full()) this.#socket.resume()
  }

  #onData (chunk: Buffer): void {
    if (this.#decoder.failed) return
    // One chunk may hold thousands of frames: cut only while the queue has room, the rest held.
    if (this.#decoder.holding) this.#backlog.push(chunk)
    else this.#decoder.write(chunk)
    this.#cut()
  }

  #full (): boolean {
    return this.#events.length >= MAX_QUEUED_EVENTS || this.#queuedBytes >= MAX_QUEUED_BYTES
  }

  /** Cuts frames into events until the input runs out or the queue is full (then the socket waits). */
  #cut (): void {
    try {
      while (!this.#full() || this.#waiter !== undefined) {
        const frame = this.#decoder.next()
        if (frame === undefined) {
          const chunk = this.#backlog.shift()
          if (chunk === undefined) break
          this.#decoder.write(chunk)
          continue
        }
        // A view of the chunk or of the decoder's buffer: copied, since events outlive both.
        this.#emit({ kind: 'frame', frame: Buffer.from(frame), ms: this.#elapsed() })
      }
    } catch {
      this.#emit({ kind: 'overlong', ms: this.#elapsed() })
      this.#socket.destroy()
      return
    }
    if (this.#full()) this.#socket.pause()
  }

  #onClose (): void {
    if (this.#closed) return
    this.#closed = true
    this.#emit({ kind: 'closed', ms: this.#elapsed(), reset: this.#reset })
  }
}

/** A TCP connection to `target`, or `ERR_P2SN_CONNECTION` after `target.timeout` ms. */
async function tcpConnect (target: ProbeTarget): Promise<net.Socket> {
  return await new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true })
    const fail = (reason: string, cause?: Error): void => {
      clearTimeout(timer)
      socket.destroy()
      reject(new P2snError('ERR_P2SN_CONNECTION', `cannot connect to ${target.host}:${target.port}: ${reason}; check the address and that the server is up`, { cause }))
    }
    const timer = setTimeout(() => { fail(`no connection within ${target.timeout} ms`) }, target.timeout)
    socket.once('error', (err: NodeJS.ErrnoException) => { fail(err.code ?? err.message, err) })
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      resolve(socket)
    })
  })
}
