/**
 * Bytes in, frames out: cuts a byte stream at each `0x04`.
 * @module
 */
import { constants as bufferConstants } from 'node:buffer'
import { Transform } from 'readable-stream'
import type { TransformCallback } from 'node:stream'
import { checkLimit } from './arguments.js'
import { P2snError } from './errors.js'
import { DEFAULT_MAX_FRAME_LENGTH, FRAME_TERMINATOR, MESSAGE_HIGH_WATER_MARK } from './protocol.js'

/**
 * First size of the buffer that gathers a frame spread over chunks; it doubles as it fills, so
 * a frame trickled in a byte at a time costs about twice its length, not a Buffer per byte.
 */
const FIRST_PENDING_CAPACITY = 64

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
 *
 * It pushes back: when the reader's buffer is full it stops in the middle of a chunk and holds
 * the rest, and the chunk's write callback, until the reader asks for more, so a chunk full of
 * tiny frames never becomes more than a few frames buffered. A frame spread over chunks is
 * gathered in one buffer that doubles as it fills, so it costs at most about twice its length.
 */
export class FrameSplitter extends Transform {
  /** The limit in force, in bytes. */
  readonly maxFrameLength: number
  readonly #leadingFrames: number
  readonly #maxLeadingFrameLength: number
  #frames = 0

  // The limit of data frames: maxFrameLength, or lower after refuseFramesOver(); what to call
  // once a frame is over that lower limit, and whether one was (all is dropped from then on)
  #dataLimit: number
  #onRefused: (() => void) | undefined
  #refused = false

  // The unterminated start of the next frame: one buffer, grown by doubling, and how much of it
  // is used (none allocated while nothing is pending)
  #pending: Buffer | undefined
  #pendingLength = 0

  // The chunk whose frames are not all pushed, where in it to go on, its write callback (held
  // until the chunk is done) and the error to give that callback
  #chunk: Buffer | undefined
  #offset = 0
  #callback: TransformCallback | undefined
  #error: P2snError | undefined
  // True while pushing; a _read asked for then (by a 'data' listener calling read()) is done
  // once the push returns, not inside it
  #pushing = false
  #readAgain = false

  constructor (options: FrameSplitterOptions = {}) {
    super({ writableObjectMode: false, readableObjectMode: true, readableHighWaterMark: MESSAGE_HIGH_WATER_MARK })
    this.maxFrameLength = checkLimit('maxFrameLength', options.maxFrameLength, DEFAULT_MAX_FRAME_LENGTH)
    this.#dataLimit = this.maxFrameLength
    this.#leadingFrames = checkLimit('leadingFrames', options.leadingFrames, 0)
    this.#maxLeadingFrameLength = checkLimit('maxLeadingFrameLength', options.maxLeadingFrameLength, this.maxFrameLength)
  }

  /**
   * Refuses the frames still to come, after the leading ones, that are longer than `length`
   * bytes, checked as bytes arrive like `maxFrameLength` (which still holds where it is lower).
   * Such a frame is no error of this stream: it is dropped, with everything after it, and
   * `onRefused` is called once, for the owner to refuse the peer. A channel sets this once its
   * key is known, to the longest frame that a message it accepts can take (`maxMessageBlocks`),
   * and answers `P2SN:ERRORKEY` with `ERR_P2SN_MESSAGE_TOO_LONG`: no frame it would refuse anyway
   * is ever buffered whole.
   * @param length - bytes, terminator excluded; at least 1
   */
  refuseFramesOver (length: number, onRefused: () => void): void {
    this.#dataLimit = Math.min(this.maxFrameLength, checkLimit('length', length, Infinity, 1))
    this.#onRefused = onRefused
  }

  /** The limit for the frame now arriving. */
  get #limit (): number {
    return this.#frames < this.#leadingFrames ? this.#maxLeadingFrameLength : this.#dataLimit
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    // Refused: the owner closes; until then nothing more is kept.
    if (this.#refused) {
      callback()
      return
    }
    this.#chunk = chunk
    this.#offset = 0
    this.#callback = callback
    this.#drive(undefined)
  }

  override _read (size: number): void {
    if (this.#pushing) {
      this.#readAgain = true
      return
    }
    this.#drive(size)
  }

  override _flush (callback: TransformCallback): void {
    if (this.#pendingLength > 0) {
      const length = this.#pendingLength
      this.#dropPending()
      callback(new P2snError('ERR_P2SN_TRUNCATED', `the input ended inside a frame, ${length} bytes after the last 0x04; the peer closed mid-message or does not speak p2sn`))
      return
    }
    callback()
  }

  override _destroy (err: Error | null, callback: (error: Error | null) => void): void {
    this.#chunk = undefined
    this.#callback = undefined
    this.#error = undefined
    this.#dropPending()
    callback(err)
  }

  /**
   * Pushes the held chunk's frames, gives back its callback once it is done, and, when the
   * reader asked (`readSize` set, from _read), lets Transform release a write it holds.
   */
  #drive (readSize: number | undefined): void {
    for (;;) {
      this.#readAgain = false
      this.#pushing = true
      let pushed: number
      try {
        pushed = this.#pushFrames()
      } finally {
        this.#pushing = false
      }
      if (this.destroyed) return
      const again = this.#readAgain
      // Last, with no state of ours in flight: the callback may start the next chunk at once.
      this.#finishChunk()
      // Transform holds a finished write's callback itself while its buffer is full. Let it go
      // unless the frames just pushed filled the buffer: the reader's next read comes for them,
      // and with it the next _read. Having pushed nothing, no read would come: let it go now.
      if (readSize !== undefined && (pushed === 0 || this.readableLength < this.readableHighWaterMark)) super._read(readSize)
      if (!again) return
      readSize ??= this.readableHighWaterMark
    }
  }

  /**
   * Pushes frames of the held chunk until `push` says the reader is full (at least one frame
   * when it has one), then keeps the unterminated rest. Returns how many frames it pushed.
   */
  #pushFrames (): number {
    const chunk = this.#chunk
    if (chunk === undefined) return 0
    let pushed = 0
    let end = chunk.indexOf(FRAME_TERMINATOR, this.#offset)
    while (end !== -1) {
      const start = this.#offset
      if (this.#pendingLength + end - start > this.#limit) return this.#fail(pushed)
      this.#frames++
      // Past the frame before pushing it: should a listener throw, it still comes out once only.
      this.#offset = end + 1
      const more = this.push(this.#take(chunk.subarray(start, end)))
      pushed++
      if (this.destroyed) return pushed
      end = chunk.indexOf(FRAME_TERMINATOR, this.#offset)
      if (!more && end !== -1) return pushed
    }
    const start = this.#offset
    if (start < chunk.length) {
      // Checked before the bytes are copied: no more than the limit is ever kept.
      if (this.#pendingLength + chunk.length - start > this.#limit) return this.#fail(pushed)
      this.#append(chunk.subarray(start))
    }
    this.#chunk = undefined
    return pushed
  }

  /** Gives the held callback back once its chunk is done (or failed). */
  #finishChunk (): void {
    const callback = this.#callback
    if (callback === undefined || this.#chunk !== undefined) return
    const error = this.#error
    this.#callback = undefined
    this.#error = undefined
    callback(error)
  }

  /** The whole frame whose last piece is `tail`: `tail` itself when nothing was pending. */
  #take (tail: Buffer): Buffer {
    if (this.#pendingLength === 0) return tail
    this.#append(tail)
    // Handed out as it is, at most about twice its length; the next frame starts a new buffer.
    const frame = this.#pending!.subarray(0, this.#pendingLength)
    this.#pending = undefined
    this.#pendingLength = 0
    return frame
  }

  /** Copies `piece` after the pending bytes, doubling the buffer when it is full. */
  #append (piece: Buffer): void {
    const length = this.#pendingLength + piece.length
    let pending = this.#pending
    if (pending === undefined || pending.length < length) {
      let capacity = pending === undefined ? FIRST_PENDING_CAPACITY : pending.length * 2
      while (capacity < length) capacity *= 2
      // Never past the limit (the caller checked `length` against it) nor past what a Buffer holds.
      capacity = Math.max(length, Math.min(capacity, this.#limit, bufferConstants.MAX_LENGTH))
      // Zero-filled and unpooled: a frame handed out as a view of it shows nothing of other
      // memory through its `.buffer`, and keeps no shared pool slab alive.
      const grown = Buffer.alloc(capacity)
      pending?.copy(grown, 0, 0, this.#pendingLength)
      this.#pending = pending = grown
    }
    piece.copy(pending, this.#pendingLength)
    this.#pendingLength = length
  }

  /**
   * Ends the held chunk with `ERR_P2SN_FRAME_TOO_LONG`, or when the frame is over the limit of
   * {@link refuseFramesOver} alone, drops it and all that follows and calls its owner; returns
   * `pushed`.
   */
  #fail (pushed: number): number {
    this.#chunk = undefined
    if (this.#frames >= this.#leadingFrames && this.#dataLimit < this.maxFrameLength) {
      this.#refused = true
      this.#dropPending()
      const onRefused = this.#onRefused
      this.#onRefused = undefined
      onRefused?.()
      return pushed
    }
    this.#error = this.#tooLong()
    return pushed
  }

  #dropPending (): void {
    this.#pending = undefined
    this.#pendingLength = 0
  }

  #tooLong (): P2snError {
    const limit = this.#limit
    this.#dropPending()
    return limit === this.maxFrameLength
      ? new P2snError('ERR_P2SN_FRAME_TOO_LONG', `a frame is longer than maxFrameLength (${limit} bytes); raise maxFrameLength if the peer really sends messages this large`)
      : new P2snError('ERR_P2SN_FRAME_TOO_LONG', `frame ${this.#frames + 1} is longer than the ${limit} bytes allowed at the start of the stream (the handshake); the peer does not speak p2sn`)
  }
}
