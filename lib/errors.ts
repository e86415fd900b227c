/**
 * The one error class of p2sn and its codes.
 * @module
 */

/**
 * Every code a {@link P2snError} can carry. Each is listed, with what to do about it, in the
 * README's "Error codes" table.
 */
export const ERROR_CODES = [
  'ERR_P2SN_INVALID_ARGUMENT',
  'ERR_P2SN_FRAME_TOO_LONG',
  'ERR_P2SN_TRUNCATED',
  'ERR_P2SN_BAD_BASE64',
  'ERR_P2SN_MESSAGE_TOO_LONG',
  'ERR_P2SN_BAD_CIPHERTEXT',
  'ERR_P2SN_DECRYPT',
  'ERR_P2SN_BAD_KEY',
  'ERR_P2SN_KEY_TOO_SMALL',
  'ERR_P2SN_KEY_TOO_LARGE',
  'ERR_P2SN_BAD_EXPONENT',
  'ERR_P2SN_PROTOCOL',
  'ERR_P2SN_ERRORKEY',
  'ERR_P2SN_BAD_KEYCHECK',
  'ERR_P2SN_HANDSHAKE_TIMEOUT',
  'ERR_P2SN_PEER_REJECTED',
  'ERR_P2SN_CLOSED',
  'ERR_P2SN_CONNECTION',
  'ERR_P2SN_UNEXPECTED_ERROR',
  'ERR_P2SN_POOL_BUSY',
  'ERR_P2SN_IDLE_TIMEOUT',
  'ERR_P2SN_SERVER_BUSY',
  'ERR_P2SN_AUTHENTICATION',
  'ERR_P2SN_KEY_MISMATCH',
  'ERR_P2SN_REQUEST_TIMEOUT',
  'ERR_P2SN_ENGINE',
  'ERR_P2SN_PROXY_PROTOCOL',
  'ERR_P2SN_CLIENT_BUSY'
] as const

/** A code of {@link ERROR_CODES}. */
export type P2snErrorCode = (typeof ERROR_CODES)[number]

/**
 * The error every part of p2sn throws or emits. Tell failures apart by `code`, never by
 * message; `cause` holds the underlying error, when there is one.
 *
 * @example
 * stream.on('error', (err) => {
 *   if (err instanceof P2snError && err.code === 'ERR_P2SN_FRAME_TOO_LONG') { ... }
 * })
 */
export class P2snError extends Error {
  /** Stable, machine-readable reason, `ERR_P2SN_*`. */
  readonly code: P2snErrorCode
  /**
   * Set on a request's failure (`request()`, a `Client`'s): whether the request had gone out to
   * the peer, so that it may have run there. `false`: it never left, and is safe to send again.
   */
  sent?: boolean

  /**
   * @param code - one of {@link ERROR_CODES}
   * @param message - lowercase: what happened and what to do
   * @param options - `cause`: the underlying error
   */
  constructor (code: P2snErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }

  /** `'P2snError'`, as stack traces and `String(error)` show it. */
  override get name (): string {
    return 'P2snError'
  }
}

/** The failures that reveal nothing secret about a message: what anyone can see of its bytes. */
const PUBLIC_FAILURES: ReadonlySet<P2snErrorCode> = new Set(['ERR_P2SN_BAD_BASE64', 'ERR_P2SN_BAD_CIPHERTEXT', 'ERR_P2SN_MESSAGE_TOO_LONG'])

/**
 * True for a failure to read a message that anyone can see (not Base64, not whole RSA blocks,
 * too many blocks, a block above the modulus): the only ones a peer may be told of with
 * `P2SN:ERRORKEY`. Never a decryption's: telling that apart would make a padding oracle.
 */
export function isPublicFailure (err: unknown): err is P2snError {
  return err instanceof P2snError && PUBLIC_FAILURES.has(err.code)
}

/** `err` as a P2snError: itself when it is one, else wrapped with `code` and kept as `cause`. */
export function toP2snError (err: unknown, code: P2snErrorCode, message: string): P2snError {
  return err instanceof P2snError ? err : new P2snError(code, message, { cause: err })
}
