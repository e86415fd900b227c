/**
 * What a session needs besides the channel and the endpoint.
 * @module
 */
import type { Framing } from './line-io.js'
import type { Progress } from './progress.js'

/** Options of every session. */
export interface SessionOptions {
  /** Lines or raw bytes. */
  framing: Framing
  /** `--progress`: counts bytes each way. */
  progress?: Progress | undefined
}
