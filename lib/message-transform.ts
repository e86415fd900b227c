/**
 * The shape shared by the per-message layers: one message in, one message out.
 * @module
 */
import { Transform } from 'readable-stream'
import type { TransformCallback } from 'node:stream'
import { checkLimit, toBuffer } from './arguments.js'
import { P2snError, type P2snErrorCode } from './errors.js'
import { MESSAGE_HIGH_WATER_MARK } from './protocol.js'

/** Options of the message layers that read what a peer sent. */
export interface InvalidInputOptions {
  /**
   * Called, instead of failing the stream, with the error for a message that is malformed in
   * a way anyone can see (not Base64; not whole RSA blocks); the message is dropped. A channel
   * uses it to answer `P2SN:ERRORKEY`, as the standard says, before closing. Never called for
   * `ERR_P2SN_DECRYPT`: answering that would make a padding oracle.
   */
  onInvalid?: (error: P2snError) => void
}

/** Options of a {@link MessageTransform}. */
export interface MessageTransformOptions extends InvalidInputOptions {
  /**
   * Messages an asynchronous `apply` (work done in worker threads) may work on at once; they
   * still come out in the order they went in. Default 1.
   */
  concurrency?: number
}

/** A message in flight when several are: its result, kept until the ones before it are out. */
interface Slot {
  settled: boolean
  failed: boolean
  message: Buffer | undefined
  error: unknown
}

/** The failures that reveal nothing secret, which {@link InvalidInputOptions.onInvalid} may see. */
const PUBLIC_FAILURES: ReadonlySet<P2snErrorCode> = new Set(['ERR_P2SN_BAD_BASE64', 'ERR_P2SN_BAD_CIPHERTEXT', 'ERR_P2SN_MESSAGE_TOO_LONG'])

/**
 * An object-mode Transform that maps each message (a Buffer, Uint8Array or string) through a
 * function; an error thrown by the function is emitted by the stream. A function may answer
 * some messages at once and others with a Promise (work done elsewhere, such as in a worker, or
 * spread over turns of the event loop): a Promise is awaited before the next message, or with
 * `concurrency` above 1 runs alongside the next few; either way order is kept.
 */
export class MessageTransform extends Transform {
  readonly #apply: (message: Buffer) => Buffer | Promise<Buffer>
  readonly #onInvalid: ((error: P2snError) => void) | undefined
  readonly #concurrency: number
  // With concurrency: the messages in flight, oldest first, and the callbacks held until a slot
  // is free and the readable side has room (write), or until all are out (flush)
  #slots: Slot[] = []
  #heldWrite: TransformCallback | undefined
  #heldFlush: TransformCallback | undefined

  /**
   * @param apply - turns one message into its other form
   * @param options - `onInvalid` and `concurrency`: see {@link MessageTransformOptions}
   */
  constructor (apply: (message: Buffer) => Buffer | Promise<Buffer>, options: MessageTransformOptions = {}) {
    super({ objectMode: true, highWaterMark: MESSAGE_HIGH_WATER_MARK })
    this.#apply = apply
    this.#onInvalid = options.onInvalid
    this.#concurrency = checkLimit('concurrency', options.concurrency, 1, 1)
  }

  override _transform (chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    let out: Buffer | Promise<Buffer>
    try {
      out = this.#apply(toBuffer(chunk))
    } catch (err) {
      if (this.#concurrency > 1) this.#inFlight(Promise.reject(err), callback)
      else this.#fail(err, callback)
      return
    }
    // Work done elsewhere waits in line, one at a time or `concurrency` at once.
    if (this.#concurrency > 1 || out instanceof Promise) this.#inFlight(out, callback)
    else callback(null, out)
  }

  override _flush (callback: TransformCallback): void {
    if (this.#slots.length === 0) callback()
    else this.#heldFlush = callback
  }

  override _read (size: number): void {
    // The reader wants more: let the held write through whatever the buffer holds (read() asks
    // before it takes its chunk out), and before Transform's own _read, which lets it on.
    this.#release(true)
    super._read(size)
  }

  override _destroy (err: Error | null, callback: (error: Error | null) => void): void {
    this.#slots = []
    this.#heldWrite = undefined
    this.#heldFlush = undefined
    callback(err)
  }

  /** Takes the next message at once while a slot is free; the results go out in order. */
  #inFlight (out: Buffer | Promise<Buffer>, callback: TransformCallback): void {
    const slot: Slot = { settled: false, failed: false, message: undefined, error: undefined }
    this.#slots.push(slot)
    Promise.resolve(out).then((message) => {
      slot.message = message
      slot.settled = true
      this.#drain()
    }, (err: unknown) => {
      slot.error = err
      slot.failed = slot.settled = true
      this.#drain()
    })
    if (this.#slots.length < this.#concurrency) callback()
    else this.#heldWrite = callback
  }

  /** Pushes the results at the head of the line that are ready. */
  #drain (): void {
    if (this.destroyed) return
    try {
      while (this.#slots.length > 0 && this.#slots[0]!.settled) {
        const slot = this.#slots.shift()!
        if (!slot.failed) {
          this.push(slot.message)
        } else if (this.#isInvalid(slot.error)) {
          this.#onInvalid!(slot.error)
        } else {
          this.destroy(slot.error instanceof Error ? slot.error : new Error(String(slot.error)))
          return
        }
      }
      this.#release()
    } catch (err) {
      // A listener that throws (in 'data', or onInvalid) runs inside a promise callback here:
      // fail the stream rather than leave an unhandled rejection and the rest stuck.
      this.destroy(err instanceof Error ? err : new Error(String(err)))
    }
  }

  #release (wanted = false): void {
    const write = this.#heldWrite
    if (write !== undefined && this.#slots.length < this.#concurrency && (wanted || this.readableLength < this.readableHighWaterMark)) {
      this.#heldWrite = undefined
      write()
    }
    const flush = this.#heldFlush
    if (flush !== undefined && this.#slots.length === 0) {
      this.#heldFlush = undefined
      flush()
    }
  }

  #isInvalid (err: unknown): err is P2snError {
    return this.#onInvalid !== undefined && err instanceof P2snError && PUBLIC_FAILURES.has(err.code)
  }

  #fail (err: unknown, callback: TransformCallback): void {
    if (this.#isInvalid(err)) {
      this.#onInvalid!(err)
      callback()
      return
    }
    callback(err as Error)
  }
}
