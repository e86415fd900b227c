/**
 * The shape shared by the per-message layers: one message in, one message out.
 * @module
 */
import { Transform } from './streams.js'
import type { TransformCallback } from 'node:stream'
import { checkLimit, toBuffer } from './arguments.js'
import { isPublicFailure, type P2snError } from './errors.js'
import { InOrder, type Outcome } from './in-order.js'
import { MESSAGE_HIGH_WATER_MARK } from './protocol.js'

/** Options of the message layers that read what a peer sent. */
export interface InvalidInputOptions {
  /**
   * Called, instead of failing the stream, with the error for a message that is malformed in
   * a way anyone can see (not Base64; not whole RSA blocks); the message is dropped. A chain
   * composed by hand uses it to answer `P2SN:ERRORKEY`, as the standard says, before closing
   * (`onInvalid: (error) => handshake.refuse(error)`); a channel does so by itself. Never called for
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
  // The messages in flight (a Promise, or with concurrency), their results kept in order, and
  // the callbacks held until a place is free and the readable side has room (write), or until
  // all are out (flush)
  readonly #inFlight: InOrder<Buffer>
  #heldWrite: TransformCallback | undefined
  #heldFlush: TransformCallback | undefined

  /**
   * Not for users: the subclasses are made by their static methods (`Base64Codec.encoder()` and
   * the rest).
   * @param apply - turns one message into its other form
   * @param options - `onInvalid` and `concurrency`: see {@link MessageTransformOptions}
   * @internal
   */
  constructor (apply: (message: Buffer) => Buffer | Promise<Buffer>, options: MessageTransformOptions = {}) {
    super({ objectMode: true, highWaterMark: MESSAGE_HIGH_WATER_MARK })
    this.#apply = apply
    this.#onInvalid = options.onInvalid
    this.#concurrency = checkLimit('concurrency', options.concurrency, 1, 1)
    this.#inFlight = new InOrder((outcome) => { this.#deliver(outcome) }, () => { this.#afterDeliveries() })
  }

  /**
   * Transform's hook (not to call directly): runs one message through the function, in line behind
   * those in flight.
   * @internal
   */
  override _transform (chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    let out: Buffer | Promise<Buffer>
    try {
      out = this.#apply(toBuffer(chunk))
    } catch (err) {
      // With others in flight it keeps its place in line, behind their results.
      if (this.#concurrency > 1) this.#take(Promise.reject(err), callback)
      else this.#fail(err, callback)
      return
    }
    // Work done elsewhere waits in line, one at a time or `concurrency` at once.
    if (this.#concurrency > 1 || out instanceof Promise) this.#take(out, callback)
    else callback(null, out)
  }

  /**
   * Transform's hook (not to call directly): the input ended; the stream ends once the messages in
   * flight are out.
   * @internal
   */
  override _flush (callback: TransformCallback): void {
    if (this.#inFlight.size === 0) callback()
    else this.#heldFlush = callback
  }

  /**
   * Transform's hook (not to call directly): the reader wants more, so a held write goes on.
   * @internal
   */
  override _read (size: number): void {
    // The reader wants more: let the held write through whatever the buffer holds (read() asks
    // before it takes its chunk out), and before Transform's own _read, which lets it on.
    this.#release(true)
    super._read(size)
  }

  /**
   * Transform's hook (not to call directly): drops the results still to come.
   * @internal
   */
  override _destroy (err: Error | null, callback: (error: Error | null) => void): void {
    // Results still to come are dropped, and whatever is being delivered is the last.
    this.#inFlight.clear()
    this.#heldWrite = undefined
    this.#heldFlush = undefined
    callback(err)
  }

  /** Puts one result in line; takes the next message at once while a place is free. */
  #take (out: Buffer | Promise<Buffer>, callback: TransformCallback): void {
    this.#inFlight.add(out)
    if (this.#inFlight.size < this.#concurrency) callback()
    else this.#heldWrite = callback
  }

  /** One result, in its turn: pushed, handed to onInvalid, or the stream's end. */
  #deliver (outcome: Outcome<Buffer>): void {
    if (this.destroyed) return
    try {
      if (outcome.ok) this.push(outcome.value)
      else if (this.#isInvalid(outcome.error)) this.#onInvalid!(outcome.error)
      // destroy() clears the line, so nothing after the failure comes out.
      else this.destroy(toError(outcome.error))
    } catch (err) {
      // A listener that throws (in 'data', or onInvalid) runs inside a promise callback here:
      // fail the stream rather than leave an unhandled rejection and the rest stuck.
      this.destroy(toError(err))
    }
  }

  /** After a run of results: let the held write or flush through, once the readable side has taken them. */
  #afterDeliveries (): void {
    if (this.destroyed) return
    try {
      this.#release()
    } catch (err) {
      // The write let through may run the next message, and its listeners, at once.
      this.destroy(toError(err))
    }
  }

  #release (wanted = false): void {
    const write = this.#heldWrite
    if (write !== undefined && this.#inFlight.size < this.#concurrency && (wanted || this.readableLength < this.readableHighWaterMark)) {
      this.#heldWrite = undefined
      write()
    }
    const flush = this.#heldFlush
    if (flush !== undefined && this.#inFlight.size === 0) {
      this.#heldFlush = undefined
      flush()
    }
  }

  #isInvalid (err: unknown): err is P2snError {
    return this.#onInvalid !== undefined && isPublicFailure(err)
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

/** What was thrown, as an Error to destroy the stream with (a listener may throw anything). */
function toError (err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}
