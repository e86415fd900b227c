/**
 * The process's own stdin and stdout as one duplex byte stream, for `--stdio`: P2SN runs over
 * them instead of TCP.
 *
 * Ending it must reach the peer as end of file, or both ends wait for each other. Node's
 * `process.stdout` cannot do that on a pipe (it never closes fd 1), so the writing side is an
 * fs stream on fd 1, closed when it ends. When stdin and stdout are one socket (inetd, socat),
 * that socket is used for both and half-closed on end.
 * @module
 */
import fs from 'node:fs'
import net from 'node:net'
import { Duplex, type Readable, type Writable } from 'node:stream'
import tty from 'node:tty'
import { UsageError } from './cli-error.js'

type Callback = (error?: Error | null) => void

/** Throws a usage error when stdin or stdout is a terminal, where P2SN frames make no sense. */
export function checkStdioIsNotTerminal (): void {
  if (tty.isatty(0) || tty.isatty(1)) {
    throw new UsageError('--stdio carries the protocol on stdin and stdout, but one of them is a terminal; connect both to a pipe or a socket (for example through ssh)')
  }
}

/** stdin and stdout as a duplex. Do not touch `process.stdout` while it is in use. */
export class StdioDuplex extends Duplex {
  readonly #input: Readable
  readonly #output: Writable
  readonly #flushed: Promise<void>

  constructor () {
    super()
    if (sameFile(0, 1)) {
      const socket = new net.Socket({ fd: 0, readable: true, writable: true, allowHalfOpen: true })
      this.#input = socket
      this.#output = socket
    } else {
      this.#input = process.stdin
      this.#output = fs.createWriteStream('', { fd: 1, autoClose: true })
    }
    this.#flushed = new Promise((resolve) => {
      this.#output.once('close', resolve)
      this.#output.once('error', () => { resolve() })
    })
    this.#input.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) this.#input.pause()
    })
    this.#input.once('end', () => this.push(null))
    this.#input.once('error', (err) => this.destroy(err))
    this.#output.once('error', (err) => this.destroy(err))
  }

  /** Resolves once everything written has gone out and stdout is closed (or failed). */
  flushed (): Promise<void> {
    return this.#flushed
  }

  override _read (): void {
    this.#input.resume()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    this.#output.write(chunk, (err) => { callback(err) })
  }

  override _final (callback: Callback): void {
    this.#output.end()
    callback()
  }

  override _destroy (err: Error | null, callback: Callback): void {
    this.#input.pause()
    // A clean close after end(): let the last bytes go out rather than cut them off.
    if (err === null && this.#output.writableEnded) {
      this.#flushed.then(() => { callback(null) }, () => { callback(null) })
      return
    }
    this.#output.destroy()
    callback(err)
  }
}

function sameFile (a: number, b: number): boolean {
  try {
    const first = fs.fstatSync(a)
    const second = fs.fstatSync(b)
    return first.isSocket() && first.dev === second.dev && first.ino === second.ino
  } catch {
    return false
  }
}
