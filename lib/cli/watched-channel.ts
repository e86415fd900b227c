/**
 * A channel with its outcome followed from the moment it is made, so that no error is missed
 * between the handshake and the session, and none is left unhandled.
 * @module
 */
import type { Channel, PeerInfo } from '../index.js'
import { CliError } from './cli-error.js'

/** A channel and promises of its handshake and its end. */
export interface WatchedChannel {
  readonly channel: Channel
  /** Resolves with the peer once the handshake is done; rejects if the channel fails or closes first. */
  readonly handshake: Promise<PeerInfo>
  /** Resolves when the channel closes cleanly; rejects with its first error. */
  readonly closed: Promise<void>
}

/** Starts following `channel`. */
export function watchChannel (channel: Channel): WatchedChannel {
  let failure: Error | undefined
  const closed = new Promise<void>((resolve, reject) => {
    channel.on('error', (err: Error) => {
      failure ??= err
    })
    channel.once('close', () => {
      if (failure === undefined) resolve()
      else reject(failure)
    })
  })
  const handshake = new Promise<PeerInfo>((resolve, reject) => {
    channel.once('handshake', resolve)
    closed.then(
      () => { reject(new CliError('the connection closed before the handshake was done')) },
      reject
    )
  })
  closed.catch(() => {})
  handshake.catch(() => {})
  return { channel, handshake, closed }
}
