/**
 * Frames of bytes to frames of P2SN Base64 and back, strictly.
 * @module
 */
import { toBuffer } from './arguments.js'
import { P2snError } from './errors.js'
import { MessageTransform, type InvalidInputOptions } from './message-transform.js'

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

/**
 * A frame stream that Base64-encodes or decodes each frame. Make one with
 * {@link Base64Codec.encoder} or {@link Base64Codec.decoder}.
 */
export class Base64Codec extends MessageTransform {
  /** Bytes in, Base64 out, one frame each. */
  static encoder (): Base64Codec {
    return new Base64Codec(encodeBase64)
  }

  /** Base64 in, bytes out, one frame each; bad Base64 fails with `ERR_P2SN_BAD_BASE64` (or goes to `onInvalid`). */
  static decoder (options: InvalidInputOptions = {}): Base64Codec {
    return new Base64Codec(decodeBase64, options)
  }
}
