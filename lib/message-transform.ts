/**
 * The shape shared by the per-message layers: one message in, one message out.
 * @module
 */
import { Transform } from 'readable-stream'
import type { TransformCallback } from 'node:stream'
import { toBuffer } from './arguments.js'
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

/** The failures that reveal nothing secret, which {@link InvalidInputOptions.onInvalid} may see. */
const PUBLIC_FAILURES: ReadonlySet<P2snErrorCode> = new Set(['ERR_P2SN_BAD_BASE64', 'ERR_P2SN_BAD_CIPHERTEXT', 'ERR_P2SN_MESSAGE_TOO_LONG'])

/**
 * An object-mode Transform that maps each message (a Buffer, Uint8Array or string) through a
 * function; an error thrown by the function is emitted by the stream. A function that returns
 * a Promise (work done elsewhere, such as in a worker) is awaited before the next message, so
 * order is kept.
 */
export class MessageTransform extends Transform {
  readonly #apply: (message: Buffer) => Buffer | Promise<Buffer>
  readonly #onInvalid: ((error: P2snError) => void) | undefined

  /**
   * @param apply - turns one message into its other form
   * @param options - `onInvalid`: see {@link InvalidInputOptions}
   */
  constructor (apply: (message: Buffer) => Buffer | Promise<Buffer>, options: InvalidInputOptions = {}) {
    super({ objectMode: true, highWaterMark: MESSAGE_HIGH_WATER_MARK })
    this.#apply = apply
    this.#onInvalid = options.onInvalid
  }

  override _transform (chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    let out: Buffer | Promise<Buffer>
    try {
      out = this.#apply(toBuffer(chunk))
    } catch (err) {
      this.#fail(err, callback)
      return
    }
    if (out instanceof Promise) out.then((message) => callback(null, message), (err: unknown) => this.#fail(err, callback))
    else callback(null, out)
  }

  #fail (err: unknown, callback: TransformCallback): void {
    if (this.#onInvalid !== undefined && err instanceof P2snError && PUBLIC_FAILURES.has(err.code)) {
      this.#onInvalid(err)
      callback()
      return
    }
    callback(err as Error)
  }
}
