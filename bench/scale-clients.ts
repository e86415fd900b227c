/**
 * The client side of the scale benchmark, run as its own process so that the server under test
 * has its process to itself: opens `connections` channels with 1024-bit keys, then keeps one
 * request in flight on each for `seconds`. Prints "start" when it starts counting, then the
 * number of replies and the time taken as JSON.
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
process.stdout.write('start\n')
const cpuBefore = process.cpuUsage()
const started = Date.now()
const deadline = started + seconds * 1000
await Promise.all(channels.map(async (channel) => {
  while (Date.now() < deadline) {
    await channel.request(message)
    replies++
  }
}))
const cpu = process.cpuUsage(cpuBefore)
const elapsed = (Date.now() - started) / 1000
for (const channel of channels) channel.destroy()
process.stdout.write(JSON.stringify({ replies, seconds: elapsed, cpuSeconds: (cpu.user + cpu.system) / 1e6 }) + '\n')
