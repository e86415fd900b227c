/**
 * The application side of a session: where the bytes to send come from and where received
 * ones go. Either the process's own stdin and stdout, or a child process (`--exec`).
 * @module
 */
import type { Readable, Writable } from 'node:stream'
import { EXIT } from './exit-codes.js'
import { printError } from './log.js'
import { describeError } from './cli-error.js'

/** Where a session reads and writes. */
export interface Endpoint {
  /** Bytes to send. */
  input: Readable
  /** Received bytes. */
  output: Writable
  /**
   * `output` is the session's own, a child's stdin: it is ended when the peer ends (the child
   * then sees end of file), and its errors are expected and swallowed (the child may close it
   * first). Not so for stdout.
   */
  ownsOutput: boolean
  /** `input` is a terminal: when the peer ends, stop too instead of waiting for Ctrl-D. */
  interactive: boolean
  /** Ends the endpoint early, on failure: kills a child. Sessions call it when they fail. */
  stop (): void
}

let stdoutUsed = false

/**
 * `process.stdout`, marked as used so that it is flushed before exiting. Over `--stdio` it
 * must not be touched at all (fd 1 carries the protocol and is closed at the end), which is
 * why nothing reads `process.stdout` but through this.
 */
export function stdout (): NodeJS.WriteStream {
  stdoutUsed = true
  return process.stdout
}

/** True once {@link stdout} was called. */
export function isStdoutUsed (): boolean {
  return stdoutUsed
}

/**
 * The process's stdin and stdout. A reader that goes away (`p2sn connect … | head -1`) ends
 * the process quietly with exit code 0.
 */
export function processEndpoint (): Endpoint {
  const output = stdout()
  output.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT.ok)
    printError(`cannot write to stdout: ${describeError(err).message}`)
    process.exit(EXIT.failure)
  })
  return {
    input: process.stdin,
    output,
    ownsOutput: false,
    interactive: process.stdin.isTTY === true,
    stop: () => { process.stdin.pause() }
  }
}
