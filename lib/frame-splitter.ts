/**
 * Bytes in, frames out: cuts a byte stream at each `0x04`. A Transform around the core's
 * {@link FrameDecoder}, which does the cutting and the limits; this file adds backpressure.
 * @module
 */
import { Transform } from './streams.js'
import type { TransformCallback } from 'node:stream'
import { FrameDecoder, type FrameDecoderOptions } from './core/frame-decoder.js'
import { P2snError } from './errors.js'
import { MESSAGE_HIGH_WATER_MARK } from './protocol.js'

/**
 * Options of {@link FrameSplitter}: those of the core's frame decoder.
 * @interface
 */
export type FrameSplitterOptions = FrameDecoderOptions

/**
 * A Transform from bytes to frames: each `0x04`-terminated frame comes out as one Buffer
 * without its terminator. Frames may span any chunk boundaries; a chunk may hold many frames.
 * Bytes left without a terminator when the input ends fail with `ERR_P2SN_TRUNCATED`; a frame
 * over the limit fails with `ERR_P2SN_FRAME_TOO_LONG` as soon as its bytes pass it.
 *
 * It pushes back: when the reader's buffer is full it stops in the middle of a chunk and holds
 * the rest, and the chunk's write callback, until the reader asks for more, so a chunk full of
 * tiny frames never becomes more than a few frames buffered. A frame spread over chunks is
 * gathered in one buffer that doubles as it fills, so it costs at most about twice its length.
 */
export class FrameSplitter extends Transform {
  /** The limit in force, in bytes. */
  readonly maxFrameLength: number
  readonly #decoder: FrameDecoder
  // Whom to tell once a frame is over the refuseFramesOver limit
  #onRefused: (() => void) | undefined

  // The write callback of the chunk the decoder holds (kept until the chunk is done) and the
  // error to give it
  #callback: TransformCallback | undefined
  #error: Error | undefined
  // True while pushing; a _read asked for then (by a 'data' listener calling read()) is done
  // once the push returns, not inside it
  #pushing = false
  #readAgain = false

  constructor (options: FrameSplitterOptions = {}) {
    super({ writableObjectMode: false, readableObjectMode: true, readableHighWaterMark: MESSAGE_HIGH_WATER_MARK })
    this.#decoder = new FrameDecoder(options)
    this.maxFrameLength = this.#decoder.maxFrameLength
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
    // The decoder's error is never emitted: `refused` tells it apart, and the owner is called.
    this.#decoder.refuseFramesOver(length, () => new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', `a frame is longer than the ${length} bytes any accepted message takes; the peer sends messages this side refuses`))
    this.#onRefused = onRefused
  }

  /**
   * Transform's hook (not to call directly): hands the chunk to the decoder and pushes its frames,
   * holding the rest while the reader is full.
   * @internal
   */
  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    // Once failed or refused the decoder drops the chunk; it is then called back at once.
    this.#decoder.write(chunk)
    this.#callback = callback
    this.#drive(undefined)
  }

  /**
   * Transform's hook (not to call directly): the reader wants more; the held chunk's frames go on.
   * @internal
   */
  override _read (size: number): void {
    if (this.#pushing) {
      this.#readAgain = true
      return
    }
    this.#drive(size)
  }

  /**
   * Transform's hook (not to call directly): the input ended; bytes left without a terminator fail
   * with `ERR_P2SN_TRUNCATED`.
   * @internal
   */
  override _flush (callback: TransformCallback): void {
    try {
      this.#decoder.end()
    } catch (err) {
      callback(err as Error)
      return
    }
    callback()
  }

  /**
   * Transform's hook (not to call directly): drops the held chunk and the decoder's state.
   * @internal
   */
  override _destroy (err: Error | null, callback: (error: Error | null) => void): void {
    this.#callback = undefined
    this.#error = undefined
    this.#decoder.reset()
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
   * Pushes frames of the held chunk until `push` says the reader is full while another frame
   * waits in the chunk (so at least one frame when it has one). Returns how many it pushed.
   */
  #pushFrames (): number {
    const decoder = this.#decoder
    let pushed = 0
    try {
      for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) {
        const more = this.push(frame)
        pushed++
        if (this.destroyed || (!more && decoder.holding)) break
      }
    } catch (err) {
      // A throw from push() (a 'data' listener's) is not a frame error: let it go on.
      if (!decoder.failed) throw err
      this.#failed(err as Error)
    }
    return pushed
  }

  /**
   * A frame was over a limit: for the {@link refuseFramesOver} one alone, the owner is told (the
   * decoder drops all from now on); else the held callback gets the error.
   */
  #failed (err: Error): void {
    if (!this.#decoder.refused) {
      this.#error = err
      return
    }
    const onRefused = this.#onRefused
    this.#onRefused = undefined
    onRefused?.()
  }

  /** Gives the held callback back once its chunk is done (or failed). */
  #finishChunk (): void {
    const callback = this.#callback
    if (callback === undefined || this.#decoder.holding) return
    const error = this.#error
    this.#callback = undefined
    this.#error = undefined
    callback(error)
  }
}
