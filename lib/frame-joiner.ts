/**
 * Frames in, bytes out: ends each frame with `0x04`. A Transform around the core's
 * {@link encodeFrame}.
 * @module
 */
import { Transform } from './streams.js'
import type { TransformCallback } from 'node:stream'
import { encodeFrame } from './core/frame-encoder.js'
import { MESSAGE_HIGH_WATER_MARK } from './protocol.js'

/**
 * A Transform from frames to bytes: writes each frame followed by `0x04`. A frame holding
 * `0x04` would split on the other side, so it fails with `ERR_P2SN_INVALID_ARGUMENT`: frames
 * are meant to carry Base64 or protocol keywords.
 */
export class FrameJoiner extends Transform {
  constructor () {
    super({ writableObjectMode: true, readableObjectMode: false, writableHighWaterMark: MESSAGE_HIGH_WATER_MARK })
  }

  /**
   * Transform's hook (not to call directly): one frame in, its bytes and `0x04` out.
   * @internal
   */
  override _transform (chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    let bytes: Buffer
    try {
      // Anything not bytes or a string is refused inside, as the wrong type.
      bytes = encodeFrame(chunk as Uint8Array | string)
    } catch (err) {
      callback(err as Error)
      return
    }
    callback(null, bytes)
  }
}
