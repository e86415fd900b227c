/**
 * `listen --echo`: answers each message with itself, in order, and ends when the peer ends.
 * @module
 */
import type { DrainHandle } from './session.js'
import type { WatchedChannel } from './watched-channel.js'

/**
 * Runs the session; resolves when the channel has closed cleanly. Drained, it answers the
 * messages already read (those waiting in the channel included), then ends the channel; later
 * ones are not answered.
 */
export function echo (watched: WatchedChannel, drainHandle?: DrainHandle): Promise<void> {
  const { channel, closed } = watched
  /** Messages still to answer once draining; `undefined`: not draining. */
  let left: number | undefined
  const end = (): void => { if (!channel.writableEnded && !channel.destroyed) channel.end() }
  channel.on('data', (message: Buffer) => {
    if (left !== undefined) {
      if (left === 0) return
      left--
    }
    if (!channel.writableEnded && !channel.write(message)) {
      channel.pause()
      channel.once('drain', () => channel.resume())
    }
    if (left === 0) end()
  })
  channel.once('end', end)
  drainHandle?.set(() => {
    left = channel.messagesPending
    if (left === 0) end()
  })
  return closed
}
