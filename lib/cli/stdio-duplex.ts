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
import type { Writable } from 'node:stream'
import type { Duplex } from '../streams.js'
import tty from 'node:tty'
import { joinDuplex } from '../index.js'
import { UsageError } from './cli-error.js'

/**
 * Checks a `--stdio` session before it starts: the data needs an endpoint of its own (`needs`
 * names the options that give one, told when `hasEndpoint` is false), and stdin and stdout
 * must not be a terminal, where P2SN frames make no sense.
 */
export function checkStdioUse (hasEndpoint: boolean, needs: string): void {
  if (!hasEndpoint) throw new UsageError(`--stdio needs ${needs}: stdin and stdout carry the protocol, so they cannot carry the data too`)
  if (tty.isatty(0) || tty.isatty(1)) {
    throw new UsageError('--stdio carries the protocol on stdin and stdout, but one of them is a terminal; connect both to a pipe or a socket (for example through ssh)')
  }
}

/**
 * stdin and stdout as one duplex, with `flushed()` to wait until what was written has gone
 * out. Do not touch `process.stdout` while it is in use.
 */
export class StdioDuplex {
  /** The duplex to wrap: a socket when stdin and stdout are one, else {@link joinDuplex}. */
  readonly duplex: Duplex | net.Socket
  readonly #flushed: Promise<void>

  constructor () {
    let output: Writable
    if (sameFile(0, 1)) {
      const socket = new net.Socket({ fd: 0, readable: true, writable: true, allowHalfOpen: true })
      this.duplex = socket
      output = socket
    } else {
      output = fs.createWriteStream('', { fd: 1, autoClose: true })
      this.duplex = joinDuplex(process.stdin, output)
    }
    this.#flushed = new Promise((resolve) => {
      output.once('close', resolve)
      output.once('error', () => { resolve() })
    })
  }

  /** Resolves once everything written has gone out and stdout is closed (or failed). */
  flushed (): Promise<void> {
    return this.#flushed
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
