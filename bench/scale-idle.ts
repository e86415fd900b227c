/**
 * The client side of the many-channels benchmark, run as its own process: opens `connections`
 * channels with 1024-bit keys (in waves, so the listen backlog never overflows), prints
 * "ready" once every handshake is done, then on any line of stdin sends `requests` requests on
 * every channel at once and prints the wall time as JSON.
 *
 * Usage: node --import tsx bench/scale-idle.ts PORT CONNECTIONS REQUESTS
 */
import { once } from 'node:events'
import { connect, generateKeyPair, type Channel } from '../lib/index.js'

const [port, connections, requests] = process.argv.slice(2).map(Number) as [number, number, number]
const keys = await Promise.all(Array.from({ length: 4 }, async () => generateKeyPair({ bits: 1024 })))
const WAVE = 100

const start = Date.now()
const channels: Channel[] = []
for (let i = 0; i < connections; i += WAVE) {
  const wave = Array.from({ length: Math.min(WAVE, connections - i) }, (_, j) =>
    connect({ port, keyPair: keys[(i + j) % keys.length]!, handshakeTimeout: 60_000 }))
  await Promise.all(wave.map(async (channel) => once(channel, 'handshake')))
  channels.push(...wave)
}
const handshakes = Date.now() - start
process.stdout.write('ready\n')
await once(process.stdin, 'data')

const begin = Date.now()
await Promise.all(channels.map(async (channel) => {
  for (let i = 0; i < requests; i++) await channel.request(`request ${i}`)
}))
const exchanges = Date.now() - begin
for (const channel of channels) channel.destroy()
process.stdout.write(JSON.stringify({ handshakesMs: handshakes, requestsMs: exchanges }) + '\n')
process.stdin.destroy()
