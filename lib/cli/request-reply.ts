/**
 * The request and reply session, the standard's way and `connect`'s default: one message in
 * flight, the next sent when the reply is in. Messages that arrive while nothing is in flight
 * are written out too. A reply of `P2SN:UNEXPECTEDERROR` (the server's handler failed) is an
 * error line on stderr instead, and makes the exit code 1.
 * @module
 */
import { KEYWORD_UNEXPECTEDERROR } from '../index.js'
import { CliError } from './cli-error.js'
import type { Endpoint } from './endpoint.js'
import { EXIT, type ExitCode } from './exit-codes.js'
import { blockPlaintextBothWays, formatMessage, messageReader } from './line-io.js'
import { printError } from './log.js'
import type { SessionOptions } from './session.js'
import { Sink } from './sink.js'
import type { WatchedChannel } from './watched-channel.js'

const UNEXPECTEDERROR = Buffer.from(KEYWORD_UNEXPECTEDERROR)

/**
 * Runs the session; resolves with the exit code once the channel has closed cleanly. On failure
 * it stops the endpoint (kills a child), then rejects.
 */
export function requestReply (watched: WatchedChannel, endpoint: Endpoint, options: SessionOptions): Promise<ExitCode> {
  const { channel, closed } = watched
  const { framing, progress } = options
  const noun = framing === 'lines' ? 'line' : 'message'
  return new Promise<ExitCode>((resolve, reject) => {
    const messages = messageReader(endpoint.input, framing, blockPlaintextBothWays(channel))
    const sink = new Sink(endpoint.output, endpoint.ownsOutput)
    let count = 0
    let failures = 0
    let inFlight = false
    let inputDone = false
    let peerEnded = false
    closed.then(() => { resolve(failures > 0 ? EXIT.failure : EXIT.ok) }, reject)

    const fail = (err: Error): void => {
      reject(err)
      channel.destroy()
    }
    const finishSending = (): void => {
      if (!channel.writableEnded) channel.end()
    }

    messages.on('data', (message: Buffer) => {
      count++
      if (peerEnded) {
        fail(new CliError(`the peer ended the connection before ${noun} ${count} of the input could be sent`))
        return
      }
      messages.pause()
      inFlight = true
      progress?.sent(message.length)
      channel.write(message)
    })
    messages.once('end', () => {
      inputDone = true
      if (!inFlight) finishSending()
    })
    messages.once('error', fail)

    channel.on('data', (message: Buffer) => {
      progress?.received(message.length)
      if (!inFlight) {
        sink.write(formatMessage(message, framing), channel)
        return
      }
      inFlight = false
      if (message.equals(UNEXPECTEDERROR)) {
        failures++
        printError(`the server's handler failed on ${noun} ${count} (it answered P2SN:UNEXPECTEDERROR)`)
      } else {
        sink.write(formatMessage(message, framing), channel)
      }
      if (inputDone) finishSending()
      else messages.resume()
    })
    channel.once('end', () => {
      peerEnded = true
      if (endpoint.ownsOutput) sink.end()
      if (inFlight) {
        fail(new CliError(`the peer ended the connection without replying to ${noun} ${count}`))
      } else if (endpoint.interactive && !inputDone) {
        inputDone = true
        messages.pause()
        finishSending()
      }
    })
  }).catch((err: unknown) => {
    endpoint.stop()
    throw err
  })
}
