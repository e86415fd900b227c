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

/**
 * A graceful stop asked of a session (`listen` on SIGTERM or SIGINT): the session sets what
 * draining means for it with {@link set}; {@link drain} may come before or after.
 */
export class DrainHandle {
  #drain: (() => void) | undefined
  #requested = false

  /** True once {@link drain} was called. */
  get requested (): boolean {
    return this.#requested
  }

  /** What draining does; run at once when it was already asked for. */
  set (drain: () => void): void {
    this.#drain = drain
    if (this.#requested) drain()
  }

  /** Asks the session to finish what it has read, then end its side of the channel. */
  drain (): void {
    if (this.#requested) return
    this.#requested = true
    this.#drain?.()
  }
}
