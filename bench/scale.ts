/**
 * Benchmarks of issue 5, each a ratio against a baseline measured in the same run:
 * private-key operations through the worker pool against inline; server throughput with many
 * clients in another process, pool against inline, with the event loop's delay; one channel's
 * stream of messages, pool against inline; and 1,000
 * concurrent channels (handshake, 10 requests each, memory per idle channel).
 */
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import { once } from 'node:events'
import { availableParallelism } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RsaPool, connect, createServer, decryptMessage, encryptMessage, generateKeyPair, type KeyPair, type Server } from '../lib/index.js'
import { listenLocal } from '../test/helpers/net.js'
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

/** A bench script beside this one, as TypeScript under tsx or as JavaScript compiled (npm run bench). */
function script (name: string): string {
  return fileURLToPath(new URL(`./${name}${extname(import.meta.url)}`, import.meta.url))
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
  console.log(`  pool of 2 workers:         ${formatRate(rates.pooled)}  ratio ${rates.ratio('pooled', 'inline')} of inline (target ≥ 1.7×)`)
}

/** Replies a second from a server under many clients in another process, and its event-loop delay. */
interface LoadResult { rate: number, p99: number, serverCores: number, clientCores: number }

/** The client processes: the load generator (the server is the bottleneck) and full channels. */
const LOADS = {
  generator: { script: 'scale-load', args: [String(CHECK_EVERY)] },
  channels: { script: 'scale-clients', args: [] }
} as const

async function serverUnderLoad (keys: KeyPair, pool: RsaPool | undefined, load: keyof typeof LOADS): Promise<LoadResult> {
  const server = createServer({ keyPair: keys, handler: (message) => message, pool })
  const port = await listenLocal(server)
  const { script: name, args } = LOADS[load]
  const clients = spawn(process.execPath, [...process.execArgv, script(name), String(port), String(CLIENTS), String(LOAD_SECONDS), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  // A client process that hangs must not hang the bench.
  const watchdog = setTimeout(() => clients.kill(), (LOAD_SECONDS + 60) * 1000)
  const exited = once(clients, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  // The delay and the CPU count from the clients' "start" (every handshake done, every
  // connection warmed up) to their result, the same window as their count of replies.
  const delay = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION })
  let cpuAtStart = process.cpuUsage()
  let serverCpu: NodeJS.CpuUsage | undefined
  let output = ''
  for await (const line of createInterface({ input: clients.stdout })) {
    if (line === 'start') {
      delay.enable()
      cpuAtStart = process.cpuUsage()
    } else {
      serverCpu = process.cpuUsage(cpuAtStart)
      delay.disable()
      output = line
    }
  }
  const [code, signal] = await exited
  clearTimeout(watchdog)
  await new Promise((resolve) => server.close(resolve))
  if (code !== 0 || serverCpu === undefined) throw new Error(`the ${load} client process failed (exit code ${code}, signal ${signal})`)
  const { replies, checked, seconds, cpuSeconds } = JSON.parse(output) as { replies: number, checked?: number, seconds: number, cpuSeconds: number }
  // Each connection checks every CHECK_EVERY-th of its own replies.
  if (checked !== undefined && checked < Math.floor(replies / CHECK_EVERY) - CLIENTS) throw new Error(`the load generator checked only ${checked} of ${replies} replies`)
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
  // The cores shared by both processes: even a pool with no cost of its own serves at most
  // cores ÷ (the inline server's CPU + the clients' CPU, per request), which as a ratio to
  // inline is the cores ÷ the cores both used inline.
  const ceiling = availableParallelism() / (channels.inline.serverCores + channels.inline.clientCores)
  console.log(`same, with ${CLIENTS} full channels (connect() and request()) as the clients`)
  console.log(`  inline:             ${formatRate(channels.inline.rate)}  event-loop delay p99 ${channels.inline.p99.toFixed(1)} ms  (${cores(channels.inline)})`)
  console.log(`  pool of 2 workers:  ${formatRate(channels.pooled.rate)}  ratio ${(channels.pooled.rate / channels.inline.rate).toFixed(2)}× inline; event-loop delay p99 ${channels.pooled.p99.toFixed(1)} ms  (${cores(channels.pooled)})`)
  console.log(`  ceiling on ${availableParallelism()} cores with these clients, for a pool of no cost at all: ${ceiling.toFixed(2)}× inline`)
}

/** A stream of messages over one channel, the server decrypting inline or in a pool of 2 workers. */
async function oneChannel (keys: KeyPair): Promise<void> {
  const pool = new RsaPool({ workers: 2 })
  const clientKeys = await generateKeyPair({ bits: 2048 })
  const message = crypto.randomBytes(200)
  const servers: Server[] = []
  /** A workload that sends `count` messages on one channel and waits until the server has read them all. */
  const streamTo = async (which: RsaPool | undefined): Promise<(count: number) => Promise<void>> => {
    let arrived = 0
    let wanted = 0
    let done: () => void = () => {}
    const server = createServer({ keyPair: keys, pool: which }, (channel) => {
      channel.on('data', () => { if (++arrived === wanted) done() })
    })
    servers.push(server)
    const channel = connect({ port: await listenLocal(server), keyPair: clientKeys })
    await once(channel, 'handshake')
    return async (count) => {
      const finished = new Promise<void>((resolve) => { done = resolve })
      wanted = arrived + count
      for (let i = 0; i < count; i++) if (!channel.write(message)) await once(channel, 'drain')
      await finished
    }
  }
  const rates = await alternate({ inline: await streamTo(undefined), pooled: await streamTo(pool) }, { slices: 4, count: 600 })
  for (const server of servers) await new Promise((resolve) => server.close(resolve))
  await pool.close()
  console.log('one channel, 200-byte messages streamed to the server (both ends in this process), 2048-bit keys')
  console.log(`  server inline:             ${formatRate(rates.inline)}`)
  console.log(`  server, pool of 2 workers: ${formatRate(rates.pooled)}  ratio ${rates.ratio('pooled', 'inline')} of inline`)
}

/** Heap and off-heap bytes in use after a full collection (run node with --expose-gc). */
function memoryInUse (): number {
  globalThis.gc?.()
  const { heapUsed, external } = process.memoryUsage()
  return heapUsed + external
}

async function manyChannels (keys: KeyPair): Promise<void> {
  const server = createServer({ keyPair: keys, handler: (message) => message })
  const port = await listenLocal(server)
  // What the sections before left behind goes first (a closed channel lets its socket linger up
  // to a second): else it is counted against the channels, and the figure can even go negative.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const before = memoryInUse()
  const clients = spawn(process.execPath, [...process.execArgv, script('scale-idle'), String(port), String(IDLE_CHANNELS), '10'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: clients.stdout })[Symbol.asyncIterator]()
  await lines.next() // "ready": every handshake done, every channel idle
  await new Promise((resolve) => setTimeout(resolve, 200))
  const during = memoryInUse()
  const channels = server.connections
  clients.stdin.write('go\n')
  const result = JSON.parse((await lines.next()).value as string) as { handshakesMs: number, requestsMs: number }
  await once(clients, 'exit')
  await new Promise((resolve) => server.close(resolve))
  // The baseline is the lower of the memory before the channels and after they are gone: what
  // earlier sections left may still be freed while the channels are open (the figure once came
  // out negative), and the lower baseline can only make the figure larger, never flatter.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const perChannel = (during - Math.min(before, memoryInUse())) / channels
  console.log(`${IDLE_CHANNELS} concurrent channels (client process ↔ this server), 2048-bit server key`)
  console.log(`  handshakes, all channels:        ${(result.handshakesMs / 1000).toFixed(2)} s  (${formatRate(IDLE_CHANNELS / (result.handshakesMs / 1000))})`)
  console.log(`  10 request/replies on each:      ${(result.requestsMs / 1000).toFixed(2)} s  (${formatRate(IDLE_CHANNELS * 10 / (result.requestsMs / 1000))})`)
  console.log(`  server memory per idle channel:  ${(perChannel / 1024).toFixed(1)} KiB over ${channels} channels${globalThis.gc === undefined ? ' (run with --expose-gc for exact figures)' : ''} (target ≤ 16 KiB)`)
}

/** Runs the scale benchmarks and prints their lines. */
export async function benchScale (): Promise<void> {
  const keys = await generateKeyPair({ bits: 2048 })
  await poolVersusInline(keys)
  console.log()
  await throughput(keys)
  console.log()
  await oneChannel(keys)
  console.log()
  await manyChannels(keys)
}
