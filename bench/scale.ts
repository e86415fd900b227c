/**
 * Benchmarks of issue 5, each a ratio against a baseline measured in the same run:
 * private-key operations through the worker pool against inline; server throughput with many
 * clients in another process, pool against inline, with the event loop's delay; and 1,000
 * concurrent channels (handshake, 10 requests each, memory per idle channel).
 */
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { RsaPool, createServer, decryptMessage, encryptMessage, generateKeyPair, type KeyPair, type Server } from '../lib/index.js'
import { alternate, formatRate } from './measure.js'

const CLIENTS = Number(process.env.P2SN_BENCH_CLIENTS ?? 32)
const LOAD_SECONDS = 4
/**
 * Milliseconds between the event-loop delay's samples. The histogram records the time between
 * samples, this included, so the figures printed are less this: the delay proper.
 */
const DELAY_RESOLUTION = 1
/** The load generator decrypts and compares one reply in this many. */
const CHECK_EVERY = 8
const IDLE_CHANNELS = 1000

function script (name: string): string {
  return fileURLToPath(new URL(`./${name}`, import.meta.url))
}

async function listening (server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

/** Private-key operations a second: a pool of 2 workers against inline on the event loop. */
async function poolVersusInline (keys: KeyPair): Promise<void> {
  const pool = new RsaPool({ workers: 2 })
  const ciphertexts = Array.from({ length: 64 }, (_, i) => encryptMessage(keys, crypto.randomBytes(i + 1)))
  const inline = (count: number): void => {
    for (let i = 0; i < count; i++) decryptMessage(keys, ciphertexts[i % 64]!)
  }
  const pooled = async (count: number): Promise<void> => {
    await Promise.all(Array.from({ length: count }, async (_, i) => pool.decrypt(keys.privateKey, ciphertexts[i % 64]!)))
  }
  const rates = await alternate({ inline, pooled }, { slices: 6, count: 600 })
  await pool.close()
  console.log('private-key operations, 2048 bits (decryptMessage with implicit rejection)')
  console.log(`  inline on the event loop:  ${formatRate(rates.inline)}`)
  console.log(`  pool of 2 workers:         ${formatRate(rates.pooled)}  ratio ${(rates.pooled / rates.inline).toFixed(2)}× inline (target ≥ 1.7×)`)
}

/** Replies a second from a server under many clients in another process, and its event-loop delay. */
interface LoadResult { rate: number, p99: number, serverCores: number, clientCores: number }

/** The client processes: the load generator (the server is the bottleneck) and full channels. */
const LOADS = {
  generator: { script: 'scale-load.ts', args: [String(CHECK_EVERY)] },
  channels: { script: 'scale-clients.ts', args: [] }
} as const

async function serverUnderLoad (keys: KeyPair, pool: RsaPool | undefined, load: keyof typeof LOADS): Promise<LoadResult> {
  const server = createServer({ keyPair: keys, handler: (message) => message, pool })
  const port = await listening(server)
  const { script: name, args } = LOADS[load]
  const clients = spawn(process.execPath, [...process.execArgv, script(name), String(port), String(CLIENTS), String(LOAD_SECONDS), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  const delay = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION })
  let output = ''
  clients.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  // Measure the delay and the CPU only while the load runs: once every client's handshake is
  // done, so that a burst of handshakes does not count.
  let cpuAtStart = process.cpuUsage()
  let channels = 0
  server.on('channel', () => {
    if (++channels !== CLIENTS) return
    delay.enable()
    cpuAtStart = process.cpuUsage()
  })
  const [code] = await once(clients, 'exit') as [number | null]
  delay.disable()
  const serverCpu = process.cpuUsage(cpuAtStart)
  await new Promise((resolve) => server.close(resolve))
  if (code !== 0) throw new Error(`the ${load} client process failed (exit code ${code})`)
  const { replies, seconds, cpuSeconds } = JSON.parse(output) as { replies: number, seconds: number, cpuSeconds: number }
  return { rate: replies / seconds, p99: delay.percentile(99) / 1e6 - DELAY_RESOLUTION, serverCores: (serverCpu.user + serverCpu.system) / 1e6 / seconds, clientCores: cpuSeconds / seconds }
}

/** Inline and pooled in turn, `rounds` times each, averaged. */
async function inlineAndPooled (keys: KeyPair, pool: RsaPool, load: keyof typeof LOADS): Promise<{ inline: LoadResult, pooled: LoadResult }> {
  const inline: LoadResult = { rate: 0, p99: 0, serverCores: 0, clientCores: 0 }
  const pooled: LoadResult = { rate: 0, p99: 0, serverCores: 0, clientCores: 0 }
  const rounds = 2
  for (let round = 0; round < rounds; round++) {
    for (const [sum, which] of [[inline, undefined], [pooled, pool]] as const) {
      const result = await serverUnderLoad(keys, which, load)
      sum.rate += result.rate / rounds
      sum.serverCores += result.serverCores / rounds
      sum.clientCores += result.clientCores / rounds
      sum.p99 = Math.max(sum.p99, result.p99)
    }
  }
  return { inline, pooled }
}

async function throughput (keys: KeyPair): Promise<void> {
  const pool = new RsaPool({ workers: 2 })
  const cores = (r: LoadResult): string => `CPU: server ${r.serverCores.toFixed(2)} cores, clients ${r.clientCores.toFixed(2)}`
  const generator = await inlineAndPooled(keys, pool, 'generator')
  console.log(`server throughput, 2048-bit server key, ${CLIENTS} connections with 1024-bit keys from a load generator in another process`)
  console.log(`  (real handshakes, every request encrypted, every reply's framing checked, 1 in ${CHECK_EVERY} decrypted and compared)`)
  console.log(`  inline:             ${formatRate(generator.inline.rate)}  event-loop delay p99 ${generator.inline.p99.toFixed(1)} ms  (${cores(generator.inline)})`)
  console.log(`  pool of 2 workers:  ${formatRate(generator.pooled.rate)}  ratio ${(generator.pooled.rate / generator.inline.rate).toFixed(2)}× inline (target ≥ 1.3×); event-loop delay p99 ${generator.pooled.p99.toFixed(1)} ms  (${cores(generator.pooled)})`)
  const channels = await inlineAndPooled(keys, pool, 'channels')
  await pool.close()
  // Two cores shared by both processes: even a pool with no cost of its own serves at most
  // 2 cores ÷ (the inline server's CPU + the clients' CPU, per request), which as a ratio to
  // inline is 2 ÷ the cores both used inline.
  const ceiling = 2 / (channels.inline.serverCores + channels.inline.clientCores)
  console.log(`same, with ${CLIENTS} full channels (connect() and request()) as the clients`)
  console.log(`  inline:             ${formatRate(channels.inline.rate)}  event-loop delay p99 ${channels.inline.p99.toFixed(1)} ms  (${cores(channels.inline)})`)
  console.log(`  pool of 2 workers:  ${formatRate(channels.pooled.rate)}  ratio ${(channels.pooled.rate / channels.inline.rate).toFixed(2)}× inline; event-loop delay p99 ${channels.pooled.p99.toFixed(1)} ms  (${cores(channels.pooled)})`)
  console.log(`  ceiling on 2 cores with these clients, for a pool of no cost at all: ${ceiling.toFixed(2)}× inline`)
}

/** Heap and off-heap bytes in use after a full collection (run node with --expose-gc). */
function memoryInUse (): number {
  globalThis.gc?.()
  const { heapUsed, external } = process.memoryUsage()
  return heapUsed + external
}

async function manyChannels (keys: KeyPair): Promise<void> {
  const server = createServer({ keyPair: keys, handler: (message) => message })
  const port = await listening(server)
  const before = memoryInUse()
  const clients = spawn(process.execPath, [...process.execArgv, script('scale-idle.ts'), String(port), String(IDLE_CHANNELS), '10'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: clients.stdout })[Symbol.asyncIterator]()
  await lines.next() // "ready": every handshake done, every channel idle
  await new Promise((resolve) => setTimeout(resolve, 200))
  const perChannel = (memoryInUse() - before) / server.connections
  const channels = server.connections
  clients.stdin.write('go\n')
  const result = JSON.parse((await lines.next()).value as string) as { handshakesMs: number, requestsMs: number }
  await once(clients, 'exit')
  await new Promise((resolve) => server.close(resolve))
  console.log(`${IDLE_CHANNELS} concurrent channels (client process ↔ this server), 2048-bit server key`)
  console.log(`  handshakes, all channels:        ${(result.handshakesMs / 1000).toFixed(2)} s  (${formatRate(IDLE_CHANNELS / (result.handshakesMs / 1000))})`)
  console.log(`  10 request/replies on each:      ${(result.requestsMs / 1000).toFixed(2)} s  (${formatRate(IDLE_CHANNELS * 10 / (result.requestsMs / 1000))})`)
  console.log(`  server memory per idle channel:  ${(perChannel / 1024).toFixed(1)} KiB over ${channels} channels${globalThis.gc === undefined ? ' (run with --expose-gc for exact figures)' : ''} (target ≤ 64 KiB)`)
}

/** Runs the scale benchmarks and prints their lines. */
export async function benchScale (): Promise<void> {
  const keys = await generateKeyPair({ bits: 2048 })
  await poolVersusInline(keys)
  console.log()
  await throughput(keys)
  console.log()
  await manyChannels(keys)
}
