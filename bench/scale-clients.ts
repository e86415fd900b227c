/**
 * The client side of the scale benchmark, run as its own process so that the server under test
 * has its process to itself: opens `connections` channels with 1024-bit keys, then keeps one
 * request in flight on each for `seconds`. Prints "start" when it starts counting, then the
 * number of replies and the time taken as JSON.
 *
 * Usage: node --import tsx bench/scale-clients.ts PORT CONNECTIONS SECONDS
 */
import crypto from 'node:crypto'
import { connect, type Channel } from '../lib/index.js'
import { clientKeys, countFromStart, numericArguments, printResult } from './scale-client-kit.js'

const [port, connections, seconds] = numericArguments<[number, number, number]>()
const keys = await clientKeys()
const message = crypto.randomBytes(64)

const channels: Channel[] = []
for (let i = 0; i < connections; i++) {
  const channel = connect({ port, keyPair: keys[i % keys.length]!, handshakeTimeout: 60_000 })
  channels.push(channel)
}
await Promise.all(channels.map(async (channel) => channel.request('warm up')))

let replies = 0
const { seconds: elapsed, cpuSeconds } = await countFromStart(async (started) => {
  const deadline = started + seconds * 1000
  await Promise.all(channels.map(async (channel) => {
    while (Date.now() < deadline) {
      await channel.request(message)
      replies++
    }
  }))
})
for (const channel of channels) channel.destroy()
printResult({ replies, seconds: elapsed, cpuSeconds })
