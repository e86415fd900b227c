/**
 * A P2SN client session built from the project's own layers over a socket, for tests that send
 * message frames as they are (a replayed request, a crafted ciphertext, a flood) after a real
 * handshake, where a `Channel` would encrypt them itself.
 * @module
 */
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import Pumpify from 'pumpify'
import { FrameJoiner, FrameSplitter, HandshakeDuplex, type FrameTransport, type KeyPair, type PeerInfo } from '../../lib/index.js'
import { within } from './timing.js'

/** Options of {@link clientSession}. */
interface SessionOptions {
  /**
   * Drop the session's errors: for tests that look at the server's side only. Left out, an error
   * nobody listens for fails the run, as it should where the session is to stay up.
   */
  ignoreErrors?: boolean
  /** Fail when the handshake takes longer than this, in ms; left out, the test's time limit. */
  timeoutMs?: number
}

/**
 * Runs the client's handshake under `keyPair` over `socket` (a byte stream, such as a TCP
 * socket) with a HandshakeDuplex on `FrameJoiner`, the socket and `FrameSplitter`, and resolves
 * once it is done, with the session (a duplex of message frames, Base64 ciphertext) and what the
 * handshake said of the server.
 */
export async function clientSession (socket: Duplex, keyPair: KeyPair, options: SessionOptions = {}): Promise<{ session: HandshakeDuplex, server: PeerInfo }> {
  const framed = new Pumpify.obj(new FrameJoiner(), socket, new FrameSplitter())
  const session = new HandshakeDuplex(framed as unknown as FrameTransport, { role: 'client', keyPair })
  if (options.ignoreErrors === true) session.on('error', () => {})
  const handshake = once(session, 'handshake') as Promise<[PeerInfo]>
  const [server] = options.timeoutMs === undefined ? await handshake : await within(options.timeoutMs, handshake, 'a raw peer\'s handshake')
  return { session, server }
}
