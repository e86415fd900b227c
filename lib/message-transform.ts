/**
 * The shape shared by the per-message layers: one message in, one message out.
 * @module
 */
import { Transform } from 'readable-stream'
import type { TransformCallback } from 'node:stream'
import { toBuffer } from './arguments.js'

/**
 * An object-mode Transform that maps each message (a Buffer, Uint8Array or string) through a
 * function; an error thrown by the function is emitted by the stream. A function that returns
 * a Promise (work done elsewhere, such as in a worker) is awaited before the next message, so
 * order is kept.
 */
export class MessageTransform extends Transform {
  readonly #apply: (message: Buffer) => Buffer | Promise<Buffer>

  /** @param apply - turns one message into its other form */
  constructor (apply: (message: Buffer) => Buffer | Promise<Buffer>) {
    super({ objectMode: true })
    this.#apply = apply
  }

  override _transform (chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    let out: Buffer | Promise<Buffer>
    try {
      out = this.#apply(toBuffer(chunk))
    } catch (err) {
      callback(err as Error)
      return
    }
    if (out instanceof Promise) out.then((message) => callback(null, message), callback)
    else callback(null, out)
  }
}
