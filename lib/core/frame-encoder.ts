/**
 * Frames in, bytes out, with no stream around it: ends each frame with `0x04`. The stream shell
 * is {@link FrameJoiner}.
 * @module
 */
import { toBuffer } from '../arguments.js'
import { P2snError } from '../errors.js'
import { FRAME_TERMINATOR } from '../protocol.js'

/**
 * `frame` followed by the `0x04` terminator, in one new Buffer. A string is taken as UTF-8.
 *
 * A frame holding `0x04` would be cut in two on the other side, so it throws
 * `ERR_P2SN_INVALID_ARGUMENT`: frames are meant to carry Base64 or protocol keywords. Anything
 * other than bytes or a string throws `ERR_P2SN_INVALID_ARGUMENT` too.
 */
export function encodeFrame (frame: Uint8Array | string): Buffer {
  let out: Buffer
  let length: number
  if (typeof frame === 'string') {
    // Encoded straight into place: one allocation, not a copy of a copy.
    length = Buffer.byteLength(frame, 'utf8')
    out = Buffer.allocUnsafe(length + 1)
    out.write(frame, 0, length, 'utf8')
  } else {
    const bytes = toBuffer(frame)
    length = bytes.length
    out = Buffer.allocUnsafe(length + 1)
    bytes.copy(out, 0)
  }
  out[length] = FRAME_TERMINATOR
  // One scan for both: the first 0x04 must be the one just added.
  if (out.indexOf(FRAME_TERMINATOR) !== length) {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'a frame holds the 0x04 terminator and would be cut in two; encode binary data (base64) before framing it')
  }
  return out
}
