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
  #waiter: ((event: ProbeEvent) => void) | undefined
  #closed = false
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
    socket.on('close', () => { this.#onClose() })
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
    if (queued !== undefined) return queued
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
    return this.#events.splice(0)
  }

  /** True once the server closed (or reset) the connection. */
  get closed (): boolean {
    return this.#closed
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
    if (this.#closed || this.#socket.destroyed) return false
    this.#tally.bytesSent += bytes.length
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { resolve(false) }, timeout)
      this.#socket.write(bytes, (err) => {
        clearTimeout(timer)
        resolve(err === undefined || err === null ? !this.#closed : false)
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
    if (this.#waiter !== undefined) this.#waiter(event)
    else this.#events.push(event)
  }

  #onData (chunk: Buffer): void {
    if (this.#decoder.failed) return
    try {
      this.#decoder.write(chunk)
      for (let frame = this.#decoder.next(); frame !== undefined; frame = this.#decoder.next()) {
        // A view of the chunk or of the decoder's buffer: copied, since events outlive both.
        this.#emit({ kind: 'frame', frame: Buffer.from(frame), ms: this.#elapsed() })
      }
    } catch {
      this.#emit({ kind: 'overlong', ms: this.#elapsed() })
      this.#socket.destroy()
    }
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
