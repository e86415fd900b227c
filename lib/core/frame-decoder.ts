/**
 * Bytes in, frames out, with no stream around it: cuts chunks at each `0x04` and enforces the
 * frame limits as bytes arrive. The stream shell is {@link FrameSplitter}; a channel drives it
 * straight from its socket's chunks.
 * @module
 */
import { constants as bufferConstants } from 'node:buffer'
import { checkLimit } from '../arguments.js'
import { P2snError } from '../errors.js'
import { DEFAULT_MAX_FRAME_LENGTH, FRAME_TERMINATOR } from '../protocol.js'

/**
 * First size of the buffer that gathers a frame spread over chunks; it doubles as it fills, so
 * a frame trickled in a byte at a time costs about twice its length, not a Buffer per byte.
 */
const FIRST_PENDING_CAPACITY = 64

/**
 * Options of {@link FrameDecoder}. The API reference, which does not export the core, shows them
 * inlined where the layers take them (`FrameSplitterOptions`, `frameDuplex`).
 * @inline
 */
export interface FrameDecoderOptions {
  /**
   * Longest frame accepted, in bytes, terminator excluded. Checked as bytes arrive, so no more
   * than this is ever buffered: a longer frame fails with `ERR_P2SN_FRAME_TOO_LONG`.
   * Default {@link DEFAULT_MAX_FRAME_LENGTH} (1 MiB).
   */
  maxFrameLength?: number
  /**
   * How many frames at the start of the input are held to `maxLeadingFrameLength` instead:
   * the handshake's three frames each way are far shorter than data. Default 0.
   */
  leadingFrames?: number
  /** Longest of the leading frames, in bytes. Default `maxFrameLength`. */
  maxLeadingFrameLength?: number
}

/**
 * Cuts a byte stream, handed over chunk by chunk, into its `0x04`-terminated frames; each comes
 * out without its terminator. Synchronous and free of streams, timers and sockets.
 *
 * Use: {@link write} a chunk, then call {@link next} until it returns `undefined`; only then
 * write the next chunk. Stopping in between (while {@link holding}) is how a caller pushes
 * back: the rest of the chunk waits, uncopied, until it calls {@link next} again.
 *
 * A frame that lies whole in one chunk comes out as a view of that chunk (no copy). A frame
 * spread over chunks is gathered in one zero-filled buffer of its own that doubles as it fills
 * (so at most about twice its length) and is never larger than the limit. A frame over the
 * limit makes {@link next} throw before any of its excess bytes are copied; from then on the
 * decoder is {@link failed} and drops all input.
 *
 * @example
 * const decoder = new FrameDecoder({ maxFrameLength: 4096 })
 * socket.on('data', (chunk) => {
 *   decoder.write(chunk)
 *   for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) handle(frame)
 * })
 * socket.on('end', () => { decoder.end() })
 */
export class FrameDecoder {
  /** The limit in force, in bytes. */
  readonly maxFrameLength: number
  readonly #leadingFrames: number
  readonly #maxLeadingFrameLength: number
  /** Frames cut so far: tells a leading frame from a data frame. */
  #frames = 0

  // The limit of data frames (maxFrameLength, or lower after refuseFramesOver) and what to
  // throw for a frame over it when it is the lower one
  #dataLimit: number
  #refusal: (() => Error) | undefined
  #refusalError: Error | undefined

  // How it failed: `#error` is set when a frame was found over the limit while another was being
  // handed out, and thrown by the next call; `#failed` once thrown
  #error: Error | undefined
  #failed = false
  #refused = false

  // The unterminated start of the next frame: one buffer, grown by doubling, and how much of it
  // is used (none allocated while nothing is pending)
  #pending: Buffer | undefined
  #pendingLength = 0

  // The chunk not yet all cut, where its next frame starts and where that frame ends (-1: the
  // rest has no terminator)
  #chunk: Buffer | undefined
  #offset = 0
  #end = -1

  /**
   * @param options - limits; each a whole number or Infinity, else `ERR_P2SN_INVALID_ARGUMENT`
   */
  constructor (options: FrameDecoderOptions = {}) {
    this.maxFrameLength = checkLimit('maxFrameLength', options.maxFrameLength, DEFAULT_MAX_FRAME_LENGTH)
    this.#dataLimit = this.maxFrameLength
    this.#leadingFrames = checkLimit('leadingFrames', options.leadingFrames, 0)
    this.#maxLeadingFrameLength = checkLimit('maxLeadingFrameLength', options.maxLeadingFrameLength, this.maxFrameLength)
  }

  /**
   * True while the held chunk still has bytes not cut: call {@link next} before writing again.
   * Once a frame is cut, an unterminated rest is kept at once, so after a frame `holding` means
   * that another frame waits in the chunk: where a caller pushing back may stop.
   */
  get holding (): boolean {
    return this.#chunk !== undefined
  }

  /** True once {@link next} (or {@link end}) has thrown a frame-limit error: all input is dropped. */
  get failed (): boolean {
    return this.#failed
  }

  /** Whether the failure was the {@link refuseFramesOver} rule rather than `maxFrameLength`. */
  get refused (): boolean {
    return this.#refused
  }

  /** Bytes of an unterminated frame kept so far; never more than the limit of that frame. */
  get pendingLength (): number {
    return this.#pendingLength
  }

  /**
   * Refuses the frames still to come, after the leading ones, that are longer than `length`
   * bytes, checked as bytes arrive like `maxFrameLength` (which still holds where it is lower).
   * For such a frame {@link next} throws what `refusal` returns, and {@link refused} is true.
   * A channel sets this once its key is known, to the longest frame that a message it accepts
   * can take, so that no frame it would refuse anyway is ever buffered whole.
   * @param length - bytes, terminator excluded; at least 1, else `ERR_P2SN_INVALID_ARGUMENT`
   * @param refusal - makes the error to throw; called at most once
   */
  refuseFramesOver (length: number, refusal: () => Error): void {
    this.#dataLimit = Math.min(this.maxFrameLength, checkLimit('length', length, Infinity, 1))
    this.#refusal = refusal
  }

  /**
   * Hands over the next chunk of input, kept as it is (not copied) until it is cut. Allowed only
   * once the previous chunk is used up ({@link holding} false), else throws
   * `ERR_P2SN_INVALID_ARGUMENT`. After a failure, chunks are dropped.
   */
  write (chunk: Buffer): void {
    if (this.#chunk !== undefined) {
      throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'a chunk was written while the previous one still holds frames; call next() until it returns undefined before writing again')
    }
    // Failed (or about to be): the owner closes, and nothing more is kept meanwhile.
    if (this.#failed || this.#error !== undefined || chunk.length === 0) return
    this.#chunk = chunk
    this.#offset = 0
    this.#end = chunk.indexOf(FRAME_TERMINATOR)
  }

  /**
   * The next whole frame of the held chunk, without its terminator, or `undefined` once the
   * chunk is used up (an unterminated rest is kept for the next chunk). Throws a
   * {@link P2snError} `ERR_P2SN_FRAME_TOO_LONG`, or the error of {@link refuseFramesOver}, as
   * soon as a frame is over its limit; the decoder is then {@link failed}.
   */
  next (): Buffer | undefined {
    const chunk = this.#chunk
    if (chunk === undefined) {
      if (this.#error !== undefined) this.#throw(this.#error)
      return undefined
    }
    const start = this.#offset
    const end = this.#end
    if (end === -1) {
      // Only a chunk with no terminator at all comes here; others keep their rest below.
      this.#chunk = undefined
      if (!this.#keep(chunk, start)) this.#throw(this.#overLimit())
      return undefined
    }
    // Checked before anything is copied: no more than the limit is ever kept.
    if (this.#pendingLength + end - start > this.#limit) {
      this.#chunk = undefined
      this.#throw(this.#overLimit())
    }
    // Counted before the rest is looked at: the rest starts the next frame, under its own limit.
    this.#frames++
    const frame = this.#take(chunk, start, end)
    this.#offset = end + 1
    this.#end = chunk.indexOf(FRAME_TERMINATOR, end + 1)
    if (this.#end === -1) {
      // Keep the rest now, so that `holding` means another frame waits in the chunk; a rest over
      // the limit is thrown by the next call, the frame in hand being good.
      this.#chunk = undefined
      if (!this.#keep(chunk, end + 1)) this.#error = this.#overLimit()
    }
    return frame
  }

  /**
   * The input ended. Throws `ERR_P2SN_TRUNCATED` when bytes of a frame are left without their
   * terminator (pending, or not yet cut from the held chunk), or the limit error that
   * {@link next} had yet to throw. Drops all state either way.
   */
  end (): void {
    const error = this.#error
    if (error !== undefined) {
      this.reset()
      this.#throw(error)
    }
    const length = this.#pendingLength + (this.#chunk === undefined ? 0 : this.#chunk.length - this.#offset)
    this.reset()
    if (length > 0) {
      throw new P2snError('ERR_P2SN_TRUNCATED', `the input ended inside a frame, ${length} bytes after the last 0x04; the peer closed mid-message or does not speak p2sn`)
    }
  }

  /**
   * Drops the held chunk, the pending bytes and a limit error not yet thrown, freeing their
   * memory (for destroy). The frame count, the limits and a failure stay.
   */
  reset (): void {
    this.#chunk = undefined
    this.#offset = 0
    this.#end = -1
    this.#error = undefined
    this.#pending = undefined
    this.#pendingLength = 0
  }

  /** The limit for the frame now arriving. */
  get #limit (): number {
    return this.#frames < this.#leadingFrames ? this.#maxLeadingFrameLength : this.#dataLimit
  }

  /** Keeps `chunk` from `start` as pending bytes; false, keeping nothing, when over the limit. */
  #keep (chunk: Buffer, start: number): boolean {
    if (start === chunk.length) return true
    if (this.#pendingLength + chunk.length - start > this.#limit) return false
    this.#append(chunk, start, chunk.length)
    return true
  }

  /** The whole frame ending with `chunk[start, end)`: a view of the chunk when nothing was pending. */
  #take (chunk: Buffer, start: number, end: number): Buffer {
    if (this.#pendingLength === 0) return chunk.subarray(start, end)
    this.#append(chunk, start, end)
    // Handed out as it is, at most about twice its length; the next frame starts a new buffer.
    const frame = this.#pending!.subarray(0, this.#pendingLength)
    this.#pending = undefined
    this.#pendingLength = 0
    return frame
  }

  /**
   * Copies `chunk[start, end)` after the pending bytes, doubling the buffer when it is full
   * (copied by range: a view per piece would cost more than the copy of a small one).
   */
  #append (chunk: Buffer, start: number, end: number): void {
    const length = this.#pendingLength + end - start
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
    chunk.copy(pending, this.#pendingLength, start, end)
    this.#pendingLength = length
  }

  /**
   * The error for the frame now arriving being over its limit: the refusal when only the
   * {@link refuseFramesOver} limit is passed, else `ERR_P2SN_FRAME_TOO_LONG`.
   */
  #overLimit (): Error {
    const limit = this.#limit
    if (this.#frames >= this.#leadingFrames && this.#dataLimit < this.maxFrameLength) {
      const refusal = this.#refusal!
      this.#refusal = undefined
      this.#refusalError = refusal()
      return this.#refusalError
    }
    return limit === this.maxFrameLength
      ? new P2snError('ERR_P2SN_FRAME_TOO_LONG', `a frame is longer than maxFrameLength (${limit} bytes); raise maxFrameLength if the peer really sends messages this large`)
      : new P2snError('ERR_P2SN_FRAME_TOO_LONG', `frame ${this.#frames + 1} is longer than the ${limit} bytes allowed at the start of the stream (the handshake); the peer does not speak p2sn`)
  }

  /** Fails for good: drops all state, then throws `error`. */
  #throw (error: Error): never {
    this.reset()
    this.#failed = true
    this.#refused = error === this.#refusalError
    throw error
  }
}
