/**
 * Errors of the command line, and how any error becomes the one line `p2sn` prints.
 * @module
 */
import { P2snError } from '../index.js'
import { EXIT, type ExitCode } from './exit-codes.js'

/** A failure with the line to print and the exit code to leave with. */
export class CliError extends Error {
  /** What the process exits with. */
  readonly exitCode: ExitCode

  constructor (message: string, exitCode: ExitCode = EXIT.failure, options?: { cause?: unknown }) {
    super(message, options)
    this.exitCode = exitCode
  }

  override get name (): string {
    return 'CliError'
  }
}

/** A wrong command line: printed with the command's name and a pointer to its `--help`. */
export class UsageError extends CliError {
  /** The command whose line is wrong, once known. */
  command: string | undefined

  constructor (message: string) {
    super(message, EXIT.usage)
  }

  override get name (): string {
    return 'UsageError'
  }
}

/** What operating-system error codes mean, in words a user can act on. */
const SYSTEM_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused (is p2sn listening there?)',
  ECONNRESET: 'the connection was reset by the peer',
  ECONNABORTED: 'the connection was aborted',
  EPIPE: 'the peer closed the connection',
  ETIMEDOUT: 'the connection timed out',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed (temporary failure)',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network unreachable',
  EADDRINUSE: 'the address is already in use (pick another port)',
  EADDRNOTAVAIL: 'the address is not available on this machine',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device'
}

/** The system error code (`ECONNREFUSED`, …) found on `err` or along its `cause` chain. */
export function systemErrorCode (err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code
    if (typeof code === 'string' && /^E[A-Z_]+$/.test(code) && !code.startsWith('ERR_')) return code
  }
  return undefined
}

/** Words for a system error code, or the code itself. */
function describeSystemError (code: string): string {
  return SYSTEM_ERRORS[code] ?? code.toLowerCase()
}

/**
 * Words for the system error found on `err` (see {@link systemErrorCode}), or `fallback(err)`
 * when it carries none.
 */
export function systemReason (err: unknown, fallback: (err: unknown) => string = String): string {
  const code = systemErrorCode(err)
  return code === undefined ? fallback(err) : describeSystemError(code)
}

/** The message of an error, or any other thrown value as a string. */
export function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/**
 * The line to print for any error and the code to exit with. Never a stack trace, and never
 * more than the error's own message: key material is not in any message p2sn makes.
 */
export function describeError (err: unknown): { message: string, exitCode: ExitCode } {
  if (err instanceof CliError) return { message: oneLine(err.message), exitCode: err.exitCode }
  if (err instanceof P2snError) {
    const refused = err.code === 'ERR_P2SN_PEER_REJECTED' || err.code === 'ERR_P2SN_KEY_MISMATCH'
    return { message: oneLine(err.message), exitCode: refused ? EXIT.peerRefused : EXIT.failure }
  }
  const code = systemErrorCode(err)
  if (code !== undefined) {
    const syscall = (err as NodeJS.ErrnoException).syscall
    return { message: oneLine(`${syscall === undefined ? '' : syscall + ': '}${describeSystemError(code)}`), exitCode: EXIT.failure }
  }
  return { message: oneLine(`unexpected error: ${errorMessage(err)}`), exitCode: EXIT.failure }
}

/**
 * A CliError that says `prefix: ` and the line for `err`, keeping the exit code `err` calls for
 * (a refused peer key stays 3).
 */
export function failure (prefix: string, err: unknown): CliError {
  const { message, exitCode } = describeError(err)
  return new CliError(`${prefix}: ${message}`, exitCode, { cause: err })
}

/** Text on one line: runs of whitespace, newlines included, become one space. */
export function oneLine (text: string): string {
  return text.replace(/\s+/g, ' ').trim()
}
