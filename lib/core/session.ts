/**
 * The frames after the handshake, as a state machine with no I/O: which are messages, the
 * peer's `P2SN:ERRORKEY`, and in the authenticated mode the `P2SN:END` that must close each
 * side's stream (over TCP, TLS cannot tell an end from a cut, so an end without it is one).
 * @module
 */
import { P2snError } from '../errors.js'
import { KEYWORD_END } from '../protocol.js'
import { ERRORKEY, errorKeyReceived, type FrameStep } from './handshake.js'

/** The last frame of each side's stream in the authenticated mode. */
export const END = Buffer.from(KEYWORD_END)

/** One side's view of the frames exchanged after the handshake. */
export class SessionFrames {
  readonly #authenticated: boolean
  readonly #trace: ((event: { direction: 'in', step: FrameStep, frame: Buffer }) => void) | undefined
  #endSeen = false

  /**
   * @param authenticated - the authenticated mode: streams end with `P2SN:END`
   * @param trace - told of each frame received
   */
  constructor (authenticated: boolean, trace?: (event: { direction: 'in', step: FrameStep, frame: Buffer }) => void) {
    this.#authenticated = authenticated
    this.#trace = trace
  }

  /**
   * Takes a frame received.
   * @returns true for a message to decode; false for the peer's `P2SN:END`; or the error the
   *   stream fails with: `ERR_P2SN_ERRORKEY` for the peer's refusal (at any time, after its
   *   END too), `ERR_P2SN_PROTOCOL` for any other frame after its END
   */
  receive (frame: Buffer): boolean | P2snError {
    const step = this.#step(frame)
    this.#trace?.({ direction: 'in', step, frame })
    return this.#take(step)
  }

  #step (frame: Buffer): FrameStep {
    if (frame.equals(ERRORKEY)) return 'ERRORKEY'
    if (this.#authenticated && frame.equals(END)) return 'END'
    return 'message'
  }

  #take (step: FrameStep): boolean | P2snError {
    if (step === 'ERRORKEY') return errorKeyReceived()
    if (this.#endSeen) {
      return new P2snError('ERR_P2SN_PROTOCOL', 'the peer sent a frame after P2SN:END, its end of stream; it does not speak p2sn\'s authenticated mode')
    }
    if (step === 'END') {
      this.#endSeen = true
      return false
    }
    return true
  }

  /**
   * The peer's stream ended.
   * @returns the error the stream fails with, `ERR_P2SN_TRUNCATED`, in the authenticated mode
   *   when the peer's END did not come first; else nothing
   */
  ended (): P2snError | undefined {
    if (this.#authenticated && !this.#endSeen) {
      return new P2snError('ERR_P2SN_TRUNCATED', 'the connection ended without the peer\'s P2SN:END: it was cut short (by the network, an attacker, or a peer that crashed or destroyed its side), and what came may be incomplete')
    }
    return undefined
  }

  /** The frame this side sends before ending its stream: END in the authenticated mode, else none. */
  get lastFrame (): Buffer | undefined {
    return this.#authenticated ? END : undefined
  }
}
