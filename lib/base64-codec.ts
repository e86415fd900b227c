/**
 * Frames of bytes to frames of P2SN Base64 and back, strictly: a stream shell over
 * `core/base64.ts`, whose functions it re-exports for those who import them from here.
 * @module
 */
import { decodeBase64, encodeBase64 } from './core/base64.js'
import { MessageTransform, type InvalidInputOptions } from './message-transform.js'

export { decodeBase64, encodeBase64 }

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
