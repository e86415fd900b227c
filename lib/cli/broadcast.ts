/**
 * `listen --keep-open` relaying its own stdio, as ncat does: stdin goes to every connected
 * client, and what any client sends is written to stdout. Reading stdin waits while no client
 * is connected. When stdin ends, every channel is ended, and so is each new one once its
 * handshake is done; a channel is also ended when its peer ends.
 * @module
 */
import type { Readable } from 'node:stream'
import type { Channel } from '../index.js'
import type { Endpoint } from './endpoint.js'
import { formatMessage, messageReader, type Framing } from './line-io.js'
import { printError } from './log.js'
import { Sink } from './sink.js'
import type { WatchedChannel } from './watched-channel.js'

/** One endpoint shared by many channels. */
export class Broadcast {
  readonly #channels = new Set<Channel>()
  readonly #messages: Readable
  readonly #sink: Sink
  readonly #framing: Framing
  #inputEnded = false
  #waiting = 0

  constructor (endpoint: Endpoint, framing: Framing) {
    this.#framing = framing
    this.#sink = new Sink(endpoint.output, endpoint.ownsOutput)
    this.#messages = messageReader(endpoint.input, framing)
    this.#messages.pause()
    this.#messages.on('data', (message: Buffer) => { this.#send(message) })
    this.#messages.once('end', () => { this.#endInput() })
    this.#messages.once('error', (err) => {
      printError(`stopped reading stdin: ${err.message}`)
      this.#endInput()
    })
  }

  /** Serves `watched` until it closes. */
  add (watched: WatchedChannel): Promise<void> {
    const { channel } = watched
    this.#channels.add(channel)
    channel.on('data', (message: Buffer) => { this.#sink.write(formatMessage(message, this.#framing), channel) })
    channel.once('end', () => { if (!channel.writableEnded) channel.end() })
    if (this.#inputEnded) channel.end()
    else if (this.#waiting === 0) this.#messages.resume()
    const forget = (): void => {
      this.#channels.delete(channel)
      if (this.#channels.size === 0) this.#messages.pause()
    }
    watched.closed.then(forget, forget)
    return watched.closed
  }

  /** Stops reading stdin and ends every channel, as when stdin ends: on SIGTERM or SIGINT. */
  drain (): void {
    this.#messages.pause()
    this.#endInput()
  }

  #send (message: Buffer): void {
    for (const channel of this.#channels) {
      if (channel.writableEnded || channel.destroyed || channel.write(message)) continue
      this.#waiting++
      const done = (): void => {
        channel.off('drain', done)
        channel.off('close', done)
        if (--this.#waiting === 0 && this.#channels.size > 0) this.#messages.resume()
      }
      channel.on('drain', done)
      channel.on('close', done)
    }
    if (this.#waiting > 0 || this.#channels.size === 0) this.#messages.pause()
  }

  #endInput (): void {
    if (this.#inputEnded) return
    this.#inputEnded = true
    for (const channel of this.#channels) if (!channel.writableEnded) channel.end()
  }
}
