/**
 * The client side of the many-channels benchmark, run as its own process: opens `connections`
 * channels with 1024-bit keys (in waves, so the listen backlog never overflows), prints
 * "ready" once every handshake is done, then on any line of stdin sends `requests` requests on
 * every channel at once and prints the wall time as JSON.
 *
 * Usage: node --import tsx bench/scale-idle.ts PORT CONNECTIONS REQUESTS
 */
import { once } from 'node:events'
import { connect, type Channel } from '../lib/index.js'
import { clientKeys, numericArguments, printResult } from './scale-client-kit.js'

const [port, connections, requests] = numericArguments<[number, number, number]>()
const keys = await clientKeys()
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
printResult({ handshakesMs: handshakes, requestsMs: exchanges })
process.stdin.destroy()
