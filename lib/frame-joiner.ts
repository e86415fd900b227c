/**
 * Frames in, bytes out: ends each frame with `0x04`.
 * @module
 */
import { Transform } from 'readable-stream'
import type { TransformCallback } from 'node:stream'
import { P2snError } from './errors.js'
import { FRAME_TERMINATOR, MESSAGE_HIGH_WATER_MARK } from './protocol.js'
import { toBuffer } from './arguments.js'

const TERMINATOR = Buffer.from([FRAME_TERMINATOR])

/**
 * A Transform from frames to bytes: writes each frame followed by `0x04`. A frame holding
 * `0x04` would split on the other side, so it fails with `ERR_P2SN_INVALID_ARGUMENT`: frames
 * are meant to carry Base64 or protocol keywords.
 */
export class FrameJoiner extends Transform {
  constructor () {
    super({ writableObjectMode: true, readableObjectMode: false, writableHighWaterMark: MESSAGE_HIGH_WATER_MARK })
  }

  override _transform (chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    let frame: Buffer
    try {
      frame = toBuffer(chunk)
    } catch (err) {
      callback(err as Error)
      return
    }
    if (frame.includes(FRAME_TERMINATOR)) {
      callback(new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'a frame holds the 0x04 terminator and would be cut in two; encode binary data (base64) before framing it'))
      return
    }
    callback(null, Buffer.concat([frame, TERMINATOR], frame.length + 1))
  }
}
