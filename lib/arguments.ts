/**
 * Checks and coercions of what callers pass in, with one error code for all of them.
 * @module
 */
import { P2snError } from './errors.js'

/**
 * Every key of an options type, none left out: the type of an options object copied key by key,
 * so that the compiler names any key the copy forgets. What a channel reads for each connection
 * is copied so, not spread: in V8, `{ ...options, keyPair }` (a spread, then a key it already
 * has) took about 8 µs a channel here. Copied by name, a channel's set-up and teardown over a
 * stand-in socket went from 44 to 28–29 µs (medians, Node 20). Options are then read by name,
 * inherited ones too, as Node's own APIs read theirs.
 */
export type EveryOption<T> = { [K in keyof Required<T>]: T[K] }

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

/**
 * The delay to give `socket.setKeepAlive(true, delay)` for a `keepAlive` option, or undefined
 * for none (left out, or `Infinity`). Node rounds the delay down to whole seconds, and 0 s means
 * the system's own delay (two hours on Linux), so 1–999 ms become 1 s; 0 asks for the system's.
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` for a value that is not a whole number ≥ 0
 */
export function keepAliveDelay (value: number | undefined): number | undefined {
  const delay = checkLimit('keepAlive', value, Infinity)
  if (delay === Infinity) return undefined
  return delay === 0 ? 0 : Math.max(delay, 1000)
}
