/**
 * The streaming session: what the endpoint writes is sent as it comes, what arrives is
 * written to the endpoint as it comes, with no waiting for replies (`connect --stream`,
 * `listen` relaying its stdio or a child).
 *
 * The endpoint's end of input ends our side of the channel; the peer's end ends the endpoint's
 * output (a child sees end of file). The session is over when both sides have ended, or, at a
 * terminal, as soon as the peer ends.
 * @module
 */
import type { Endpoint } from './endpoint.js'
import { blockPlaintextBothWays, formatMessage, messageReader } from './line-io.js'
import type { DrainHandle, SessionOptions } from './session.js'
import { Sink } from './sink.js'
import type { WatchedChannel } from './watched-channel.js'

/**
 * Runs the session; resolves when the channel has closed cleanly. On failure it stops the
 * endpoint (kills a child), then rejects.
 *
 * Drained (`drainHandle`): with a child (`--exec`), the messages already read (those waiting
 * in the channel included) still go to it, then its stdin ends; what it writes until it
 * closes its stdout is still sent, and then our side ends. With stdin and stdout, our side
 * ends at once, and what the peer sends is still written until it ends.
 */
export function relay (watched: WatchedChannel, endpoint: Endpoint, options: SessionOptions, drainHandle?: DrainHandle): Promise<void> {
  const { channel, closed } = watched
  const { framing, progress } = options
  return new Promise<void>((resolve, reject) => {
    closed.then(resolve, reject)
    const messages = messageReader(endpoint.input, framing, blockPlaintextBothWays(channel))
    const sink = new Sink(endpoint.output, endpoint.ownsOutput)
    let sending = true

    const onMessage = (message: Buffer): void => {
      progress?.sent(message.length)
      if (!channel.write(message)) {
        messages.pause()
        channel.once('drain', () => { if (sending) messages.resume() })
      }
    }
    const stopSending = (): void => {
      if (!sending) return
      sending = false
      messages.off('data', onMessage)
      messages.pause()
      if (!channel.writableEnded) channel.end()
    }
    messages.on('data', onMessage)
    messages.once('end', stopSending)
    messages.once('error', (err) => {
      reject(err)
      channel.destroy()
    })

    /** With a child, once draining: messages still to give it before its stdin ends. */
    let left: number | undefined
    channel.on('data', (message: Buffer) => {
      if (left !== undefined) {
        if (left === 0) return
        left--
      }
      progress?.received(message.length)
      sink.write(formatMessage(message, framing), channel)
      if (left === 0) sink.end()
    })
    drainHandle?.set(() => {
      if (!endpoint.ownsOutput) {
        stopSending()
        return
      }
      left = channel.messagesPending
      if (left === 0) sink.end()
    })
    channel.once('end', () => {
      if (endpoint.ownsOutput) sink.end()
      if (endpoint.interactive) stopSending()
    })
  }).catch((err: unknown) => {
    endpoint.stop()
    throw err
  })
}
