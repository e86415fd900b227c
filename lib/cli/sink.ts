/**
 * Writing received messages to where they go (stdout, a child's stdin) with backpressure: when
 * the destination is full, the channel they come from is paused until it drains. A destination
 * that fails (a child that exited without reading) swallows the rest.
 * @module
 */
import type { Readable, Writable } from 'node:stream'

/** A destination for received bytes. */
export class Sink {
  readonly #stream: Writable
  #dead = false

  /**
   * @param stream - where bytes go
   * @param tolerateErrors - swallow the stream's errors (and what follows) instead of leaving
   *   them unhandled; for a child's stdin, which may close first
   */
  constructor (stream: Writable, tolerateErrors: boolean) {
    this.#stream = stream
    if (tolerateErrors) stream.on('error', () => { this.#dead = true })
  }

  /** Writes `bytes`; pauses `source` until the destination drains when it is full. */
  write (bytes: Buffer, source: Readable): void {
    if (this.#dead || this.#stream.destroyed || this.#stream.writableEnded) return
    if (this.#stream.write(bytes)) return
    source.pause()
    const resume = (): void => {
      this.#stream.off('drain', resume)
      this.#stream.off('close', resume)
      this.#stream.off('error', resume)
      source.resume()
    }
    this.#stream.on('drain', resume)
    this.#stream.on('close', resume)
    this.#stream.on('error', resume)
  }

  /** Ends the destination (a child's stdin: it then sees end of file). */
  end (): void {
    if (!this.#dead && !this.#stream.destroyed && !this.#stream.writableEnded) this.#stream.end()
  }
}
