/**
 * One duplex from a readable and a writable: a process's stdin and stdout, or a child's stdout
 * and stdin, for {@link wrap}.
 * @module
 */
import { Duplex } from './streams.js'
import type { Readable as NodeReadable, Writable as NodeWritable } from 'node:stream'
import { P2snError, toP2snError } from './errors.js'

type Callback = (error?: Error | null) => void

/**
 * A byte Duplex that writes to `writable` and reads from `readable`, with backpressure both
 * ways (the readable is paused while our reader is behind; a write's callback waits for the
 * writable's `'drain'`). `end()` ends the writable; the readable's end ends ours. `destroy()`
 * is quiet and destroys both; after `end()` it first lets the writable flush what it holds.
 *
 * For this process's own stdout on a pipe, pass `fs.createWriteStream('', { fd: 1 })` rather
 * than `process.stdout`: Node never closes fd 1, so the peer would see no end of file until
 * the process exits.
 *
 * @example
 * const child = spawn('p2sn-server')
 * const channel = wrap(joinDuplex(child.stdout, child.stdin), { role: 'client' })
 */
export function joinDuplex (readable: NodeReadable, writable: NodeWritable): Duplex {
  return new JoinedDuplex(readable, writable)
}

class JoinedDuplex extends Duplex {
  readonly #readable: NodeReadable
  readonly #writable: NodeWritable
  #drainCallback: Callback | undefined

  constructor (readable: NodeReadable, writable: NodeWritable) {
    super()
    this.#readable = readable
    this.#writable = writable
    readable.on('data', this.#onData)
    readable.on('end', this.#onEnd)
    readable.on('close', this.#onReadableClose)
    readable.on('error', this.#onError)
    writable.on('error', this.#onError)
    writable.on('drain', this.#onDrain)
  }

  readonly #onData = (chunk: Buffer): void => {
    if (!this.push(chunk)) this.#readable.pause()
  }

  #ended = false

  readonly #onEnd = (): void => {
    this.#ended = true
    this.push(null)
  }

  // Closed without an end (a killed child, say): what it would have sent is lost, so say so.
  readonly #onReadableClose = (): void => {
    if (!this.#ended && !this.destroyed) {
      this.destroy(new P2snError('ERR_P2SN_CLOSED', 'the stream closed without ending; data may be missing'))
    }
  }

  readonly #onError = (err: Error): void => {
    this.destroy(toP2snError(err, 'ERR_P2SN_CONNECTION', `the stream failed: ${err.message}`))
  }

  readonly #onDrain = (): void => {
    const callback = this.#drainCallback
    this.#drainCallback = undefined
    callback?.()
  }

  override _read (): void {
    this.#readable.resume()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    if (this.#writable.write(chunk)) callback()
    else this.#drainCallback = callback
  }

  override _final (callback: Callback): void {
    this.#writable.end(callback)
  }

  override _destroy (err: Error | null, callback: (error: Error | null) => void): void {
    const pending = this.#drainCallback
    this.#drainCallback = undefined
    pending?.(err ?? new P2snError('ERR_P2SN_CLOSED', 'the stream was destroyed before this write went out'))
    this.#readable.removeListener('data', this.#onData)
    this.#readable.removeListener('end', this.#onEnd)
    this.#readable.removeListener('close', this.#onReadableClose)
    this.#writable.removeListener('drain', this.#onDrain)
    this.#readable.destroy()
    const writable = this.#writable
    // A clean close after end(): let the last bytes go out rather than cut them off.
    if (err === null && writable.writableEnded && !writable.destroyed && !writable.writableFinished) {
      let called = false
      const done = (): void => {
        if (called) return
        called = true
        callback(null)
      }
      writable.once('finish', done)
      writable.once('close', done)
      writable.once('error', done)
      return
    }
    writable.destroy()
    callback(err)
  }
}
