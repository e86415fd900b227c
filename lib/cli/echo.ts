/**
 * `listen --echo`: answers each message with itself, in order, and ends when the peer ends.
 * @module
 */
import type { WatchedChannel } from './watched-channel.js'

/** Runs the session; resolves when the channel has closed cleanly. */
export function echo (watched: WatchedChannel): Promise<void> {
  const { channel, closed } = watched
  channel.on('data', (message: Buffer) => {
    if (!channel.write(message)) {
      channel.pause()
      channel.once('drain', () => channel.resume())
    }
  })
  channel.once('end', () => { channel.end() })
  return closed
}
