/**
 * Checks and coercions of what callers pass in, with one error code for all of them.
 * @module
 */
import { P2snError } from './errors.js'

/** A message or frame given as bytes or text, as a Buffer over the same memory (text as UTF-8). */
export function toBuffer (value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value
  if (typeof value === 'string') return Buffer.from(value, 'utf8')
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `a message must be a buffer, a uint8array or a string, not ${value === null ? 'null' : typeof value}`)
}

/** A `max*` or `*Timeout` option: a whole number (or Infinity) of at least `min`, else `fallback` when unset. */
export function checkLimit (name: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !(Number.isSafeInteger(value) || value === Infinity) || value < min) {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `${name} must be a whole number of at least ${min}, not ${String(value)}`)
  }
  return value
}
