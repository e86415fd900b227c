/**
 * Strict P2SN Base64, as plain functions: bytes in, bytes out, no streams.
 * @module
 */
import { toBuffer } from '../arguments.js'
import { P2snError } from '../errors.js'

/** Standard Base64 with `=` padding (RFC 4648 §4) of `bytes`, as ASCII bytes. */
export function encodeBase64 (bytes: Uint8Array): Buffer {
  return Buffer.from(toBuffer(bytes).toString('base64'), 'latin1')
}

/**
 * Decodes strict P2SN Base64: alphabet `A-Z a-z 0-9 + /`, `=` padding, a length that is a
 * multiple of 4, and zero unused bits. `Buffer.from(s, 'base64')` skips what it does not know,
 * so the decoded bytes are encoded again and must give back the input exactly: that accepts the
 * canonical form and nothing else.
 *
 * @throws P2snError `ERR_P2SN_BAD_BASE64`
 */
export function decodeBase64 (text: Uint8Array | string): Buffer {
  const input = typeof text === 'string' ? text : toBuffer(text).toString('latin1')
  const bytes = Buffer.from(input, 'base64')
  if (bytes.toString('base64') !== input) {
    throw new P2snError('ERR_P2SN_BAD_BASE64', 'a frame is not valid base64 (standard alphabet, = padding, length a multiple of 4); the peer does not speak p2sn or the data was damaged')
  }
  return bytes
}
