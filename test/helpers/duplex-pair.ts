/**
 * In-memory byte transports for the end-to-end tests: a connected pair of duplexes that cuts
 * what it carries into other chunks (whole, a byte at a time, or at seeded random places).
 * @module
 */
import { Duplex } from 'readable-stream'
import { rechunk, seededRandom } from './chunking.js'

type Callback = (error?: Error | null) => void

/**
 * How a {@link ChunkingPairEnd} cuts each chunk written to it before its peer reads it:
 * - `'whole'`: as written;
 * - `'byte'`: one byte per chunk;
 * - `'random'`: at random places (a cut after each byte with probability 1/3), from
 *   {@link DuplexPairOptions.seed}, so a failing run can be repeated.
 */
export type PairChunking = 'whole' | 'byte' | 'random'

/** Options of {@link duplexPair}. */
interface DuplexPairOptions {
  /** How each end cuts what is written to it. Default `'whole'`. */
  chunking?: PairChunking
  /** Seed of the `'random'` cuts; each end gets its own sequence from it. Default 1. */
  seed?: number
  /**
   * Bytes each end buffers on its readable side before its peer's writes wait, and on its
   * writable side before `write()` returns false. Default 16 KiB, like a socket's streams.
   */
  highWaterMark?: number
}

/** The error a write gets once the other end is gone, as a socket's would. */
function brokenPipe (): Error {
  return Object.assign(new Error('the other end of the duplex pair was destroyed'), { code: 'EPIPE' })
}

/**
 * One end of a {@link duplexPair}: bytes written to it come out of its peer, cut as the pair's
 * chunking says, and in order (for frames delivered whole, at once and recorded, see
 * `RecordingPairEnd` in `frame-pair.ts`). The peer's readable side buffers at most `highWaterMark` bytes:
 * past that, this end holds the write's callback until the peer is read (backpressure, as
 * between two sockets). Delivery is asynchronous: a write never reaches the peer in the same
 * tick.
 *
 * Half-open like a socket with `allowHalfOpen`: `end()` ends the peer's readable side and
 * leaves the other direction open. `destroy()` gives the peer end-of-stream too (a peer that
 * closes), after which the peer's writes fail with an `EPIPE` error. Each end closes once both
 * directions are done.
 */
export class ChunkingPairEnd extends Duplex {
  /** Bytes this end has handed to its peer's readable side. */
  bytesWritten = 0
  /** Chunks those bytes were cut into: with `'byte'` chunking it equals {@link ChunkingPairEnd.bytesWritten}. */
  chunksWritten = 0

  #peer: ChunkingPairEnd | undefined
  readonly #cut: (chunk: Buffer) => Buffer[]
  // The chunk being handed over, and its write's callback, while the peer is full.
  #pieces: Buffer[] = []
  #callback: Callback | undefined
  #scheduled = false

  /** Use {@link duplexPair}. */
  constructor (chunking: PairChunking, seed: number, highWaterMark: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: highWaterMark, writableHighWaterMark: highWaterMark })
    if (chunking === 'byte') {
      this.#cut = (chunk) => rechunk(chunk, 'byte')
    } else if (chunking === 'random') {
      const random = seededRandom(seed)
      this.#cut = (chunk) => rechunk(chunk, random)
    } else {
      this.#cut = (chunk) => chunk.length === 0 ? [] : [chunk]
    }
  }

  /** Connects this end to `peer`; {@link duplexPair} does it for both. */
  connect (peer: ChunkingPairEnd): void {
    this.#peer = peer
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    const peer = this.#peer
    if (peer === undefined || peer.destroyed || peer.readableEnded) {
      callback(brokenPipe())
      return
    }
    this.#pieces = this.#cut(chunk)
    this.#callback = callback
    this.#schedule()
  }

  override _final (callback: Callback): void {
    // Every write's callback has run, so every byte is already in the peer's buffer.
    const peer = this.#peer
    if (peer !== undefined && !peer.destroyed) peer.push(null)
    callback()
  }

  override _read (): void {
    // The peer may go on handing over the chunk it holds.
    if (this.#peer !== undefined) this.#peer.#schedule()
  }

  override _destroy (err: Error | null, callback: (error: Error | null) => void): void {
    const pending = this.#callback
    this.#callback = undefined
    this.#pieces = []
    pending?.(err ?? brokenPipe())
    const peer = this.#peer
    if (peer !== undefined && !peer.destroyed) {
      // The peer's write that waits for this end to read never will.
      const stuck = peer.#callback
      peer.#callback = undefined
      peer.#pieces = []
      stuck?.(brokenPipe())
      if (!peer.readableEnded) peer.push(null)
    }
    callback(err)
  }

  /** Hands the held pieces to the peer on a later turn of the event loop. */
  #schedule (): void {
    if (this.#scheduled || this.#callback === undefined) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      this.#handOver()
    })
  }

  #handOver (): void {
    const peer = this.#peer
    if (this.#callback === undefined || peer === undefined) return
    if (peer.destroyed) {
      const callback = this.#callback
      this.#callback = undefined
      this.#pieces = []
      callback(brokenPipe())
      return
    }
    while (this.#pieces.length > 0) {
      const piece = this.#pieces.shift()!
      this.bytesWritten += piece.length
      this.chunksWritten++
      // Full: wait for the peer's _read, which schedules the rest.
      if (!peer.push(piece)) return
    }
    // The peer's reader may have destroyed this end meanwhile, which failed the callback.
    const callback = this.#callback
    if (callback === undefined) return
    this.#callback = undefined
    callback()
  }
}

/**
 * Two connected in-memory byte duplexes, `[a, b]`: what is written to `a` is read from `b` and
 * the other way round, each chunk cut as `chunking` says, with backpressure. Use it to run both
 * ends of a protocol in one process, over any chunking a real network could produce.
 *
 * @example
 * const [a, b] = duplexPair({ chunking: 'byte' })
 * const client = wrap(a, { role: 'client', keyPair })
 * const server = wrap(b, { role: 'server', keyPair: serverKeys })
 */
export function duplexPair (options: DuplexPairOptions = {}): [ChunkingPairEnd, ChunkingPairEnd] {
  const chunking = options.chunking ?? 'whole'
  const seed = options.seed ?? 1
  const highWaterMark = options.highWaterMark ?? 16 * 1024
  const a = new ChunkingPairEnd(chunking, seed, highWaterMark)
  const b = new ChunkingPairEnd(chunking, seed + 0x9e3779b9, highWaterMark)
  a.connect(b)
  b.connect(a)
  return [a, b]
}
