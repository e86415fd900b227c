/**
 * The client side of the scale benchmark, run as its own process so that the server under test
 * has its process to itself: opens `connections` channels with 1024-bit keys, then keeps one
 * request in flight on each for `seconds`, and prints the number of replies as JSON.
 *
 * Usage: node --import tsx bench/scale-clients.ts PORT CONNECTIONS SECONDS
 */
import crypto from 'node:crypto'
import { connect, generateKeyPair, type Channel } from '../lib/index.js'

const [port, connections, seconds] = process.argv.slice(2).map(Number) as [number, number, number]
const keys = await Promise.all(Array.from({ length: 4 }, async () => generateKeyPair({ bits: 1024 })))
const message = crypto.randomBytes(64)

const channels: Channel[] = []
for (let i = 0; i < connections; i++) {
  const channel = connect({ port, keyPair: keys[i % keys.length]!, handshakeTimeout: 60_000 })
  channels.push(channel)
}
await Promise.all(channels.map(async (channel) => channel.request('warm up')))

let replies = 0
const cpuBefore = process.cpuUsage()
const deadline = Date.now() + seconds * 1000
await Promise.all(channels.map(async (channel) => {
  while (Date.now() < deadline) {
    await channel.request(message)
    replies++
  }
}))
for (const channel of channels) channel.destroy()
const cpu = process.cpuUsage(cpuBefore)
process.stdout.write(JSON.stringify({ replies, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 }) + '\n')
