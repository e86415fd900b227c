/**
 * Bytes in, frames out: cuts a byte stream at each `0x04`.
 * @module
 */
import { Transform } from 'readable-stream'
import type { TransformCallback } from 'node:stream'
import { checkLimit } from './arguments.js'
import { P2snError } from './errors.js'
import { DEFAULT_MAX_FRAME_LENGTH, FRAME_TERMINATOR, MESSAGE_HIGH_WATER_MARK } from './protocol.js'

/** Options of {@link FrameSplitter}. */
export interface FrameSplitterOptions {
  /**
   * Longest frame accepted, in bytes, terminator excluded. Checked as bytes arrive, so no more
   * than this is ever buffered: a longer frame fails with `ERR_P2SN_FRAME_TOO_LONG`.
   * Default {@link DEFAULT_MAX_FRAME_LENGTH} (1 MiB).
   */
  maxFrameLength?: number
  /**
   * How many frames at the start of the stream are held to `maxLeadingFrameLength` instead:
   * the handshake's three frames each way are far shorter than data. Default 0.
   */
  leadingFrames?: number
  /** Longest of the leading frames, in bytes. Default `maxFrameLength`. */
  maxLeadingFrameLength?: number
}

/**
 * A Transform from bytes to frames: each `0x04`-terminated frame comes out as one Buffer
 * without its terminator. Frames may span any chunk boundaries; a chunk may hold many frames.
 * Bytes left without a terminator when the input ends fail with `ERR_P2SN_TRUNCATED`.
 */
export class FrameSplitter extends Transform {
  /** The limit in force, in bytes. */
  readonly maxFrameLength: number
  readonly #leadingFrames: number
  readonly #maxLeadingFrameLength: number
  // The unterminated start of the next frame, in pieces, and its length.
  #pending: Buffer[] = []
  #pendingLength = 0
  #frames = 0

  constructor (options: FrameSplitterOptions = {}) {
    super({ writableObjectMode: false, readableObjectMode: true, readableHighWaterMark: MESSAGE_HIGH_WATER_MARK })
    this.maxFrameLength = checkLimit('maxFrameLength', options.maxFrameLength, DEFAULT_MAX_FRAME_LENGTH)
    this.#leadingFrames = checkLimit('leadingFrames', options.leadingFrames, 0)
    this.#maxLeadingFrameLength = checkLimit('maxLeadingFrameLength', options.maxLeadingFrameLength, this.maxFrameLength)
  }

  /** The limit for the frame now arriving. */
  get #limit (): number {
    return this.#frames < this.#leadingFrames ? this.#maxLeadingFrameLength : this.maxFrameLength
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let start = 0
    let end = chunk.indexOf(FRAME_TERMINATOR)
    while (end !== -1) {
      if (this.#pendingLength + end - start > this.#limit) {
        callback(this.#tooLong())
        return
      }
      this.#frames++
      this.push(this.#take(chunk.subarray(start, end)))
      start = end + 1
      end = chunk.indexOf(FRAME_TERMINATOR, start)
    }
    if (start < chunk.length) {
      if (this.#pendingLength + chunk.length - start > this.#limit) {
        callback(this.#tooLong())
        return
      }
      this.#pending.push(chunk.subarray(start))
      this.#pendingLength += chunk.length - start
    }
    callback()
  }

  override _flush (callback: TransformCallback): void {
    if (this.#pendingLength > 0) {
      callback(new P2snError('ERR_P2SN_TRUNCATED', `the input ended inside a frame, ${this.#pendingLength} bytes after the last 0x04; the peer closed mid-message or does not speak p2sn`))
      return
    }
    callback()
  }

  /** The whole frame whose last piece is `tail`. */
  #take (tail: Buffer): Buffer {
    if (this.#pendingLength === 0) return tail
    this.#pending.push(tail)
    const frame = Buffer.concat(this.#pending, this.#pendingLength + tail.length)
    this.#pending = []
    this.#pendingLength = 0
    return frame
  }

  #tooLong (): P2snError {
    const limit = this.#limit
    this.#pending = []
    this.#pendingLength = 0
    return limit === this.maxFrameLength
      ? new P2snError('ERR_P2SN_FRAME_TOO_LONG', `a frame is longer than maxFrameLength (${limit} bytes); raise maxFrameLength if the peer really sends messages this large`)
      : new P2snError('ERR_P2SN_FRAME_TOO_LONG', `frame ${this.#frames + 1} is longer than the ${limit} bytes allowed at the start of the stream (the handshake); the peer does not speak p2sn`)
  }
}
