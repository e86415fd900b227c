/**
 * The soak run behind `npm run soak` and its short CI version: many clients send bursts of
 * messages of random sizes (up to several RSA blocks) without waiting, for a fixed time, and
 * check that every reply is their message, in order.
 * @module
 */
import crypto from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer, generateKeyPair, type Channel } from '../../lib/index.js'
import { listenLocal } from './net.js'

/** Options of {@link soak}. */
interface SoakOptions {
  clients: number
  seconds: number
  /** Largest message, in bytes. */
  maxMessage: number
  /** Server decryption threads; inline when left out. */
  workers?: number
}

/** What a soak run counted. */
interface SoakResult {
  messages: number
  bytes: number
  mismatches: number
  errors: string[]
}

/** Sends bursts on one channel until `deadline`; counts into `result`. */
async function drive (channel: Channel, deadline: number, maxMessage: number, result: SoakResult): Promise<void> {
  const expected: Buffer[] = []
  let wake: (() => void) | undefined
  channel.on('data', (reply: Buffer) => {
    const message = expected.shift()
    if (message === undefined || !reply.equals(message)) result.mismatches++
    result.messages++
    result.bytes += reply.length
    if (expected.length === 0) wake?.()
  })
  while (Date.now() < deadline) {
    const burst = crypto.randomInt(1, 6)
    const done = new Promise<void>((resolve) => { wake = resolve })
    for (let i = 0; i < burst; i++) {
      const message = crypto.randomBytes(crypto.randomInt(0, maxMessage + 1))
      expected.push(message)
      channel.write(message)
    }
    await done
  }
  channel.end()
  await once(channel, 'close')
}

/** Runs a server and `clients` clients in this process for `seconds`. */
export async function soak (options: SoakOptions): Promise<SoakResult> {
  const [serverKeys, ...clientKeys] = await Promise.all([2048, 1024, 1024, 1024].map(async (bits) => generateKeyPair({ bits })))
  const result: SoakResult = { messages: 0, bytes: 0, mismatches: 0, errors: [] }
  const server = createServer({ keyPair: serverKeys!, handler: (message) => message, workers: options.workers })
  server.on('clientError', (err: Error & { code?: string }) => result.errors.push(`server: ${err.code ?? err.message}`))
  const port = await listenLocal(server)
  const deadline = Date.now() + options.seconds * 1000
  await Promise.all(Array.from({ length: options.clients }, async (_, i) => {
    const channel = connect({ port, keyPair: clientKeys[i % clientKeys.length]! })
    channel.on('error', (err: Error & { code?: string }) => result.errors.push(`client: ${err.code ?? err.message}`))
    await drive(channel, deadline, options.maxMessage, result)
  }))
  await new Promise((resolve) => server.close(resolve))
  return result
}
