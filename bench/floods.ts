/**
 * `npm run bench:floods`: the memory that two floods cost, first in one FrameSplitter alone,
 * then in a server, per connection, over loopback TCP:
 * - a flood of frames: a 64 KiB chunk of 0x04 (65,536 empty frames); over TCP, bursts of valid
 *   message frames to a server whose handler never answers, so that nothing downstream reads;
 * - a frame trickled in a byte at a time, with no terminator yet.
 *
 * Memory is heapUsed + arrayBuffers after full collections (run node with --expose-gc). The
 * clients run in a child process (this file again, with `burst` or `trickle`), so that only
 * the server's memory is counted. Only the public API of lib/index.ts is used, so that this file
 * runs unchanged against older versions of lib/, for before-and-after figures.
 *
 * Usage: node --expose-gc --import tsx bench/floods.ts
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import {
  FrameSplitter, createServer, encodeBase64, encryptMessage, generateKeyPair, wrap, type PeerInfo, type PublicKey
} from '../lib/index.js'
import { inUse } from '../test/helpers/memory.js'
import { listenLocal } from '../test/helpers/net.js'
import { clientKeys, numericArguments, printResult } from './scale-client-kit.js'

const EOT = 0x04
/** Clients bursting frames at once, and for how long. */
const BURST_CONNECTIONS = 16
const BURST_MS = 2000
/** Bytes of the frame trickled in a byte at a time (no terminator), and the most time it may take. */
const TRICKLE_BYTES = 1_000_000
const TRICKLE_MS = 15_000

type ClientMode = 'burst' | 'trickle'

function kib (bytes: number): string {
  return `${(bytes / 1024).toLocaleString('en-US', { maximumFractionDigits: 1 })} KiB`
}

/** Memory held by one splitter that nobody reads after `feed`; the splitter is then destroyed. */
async function splitterHolds (feed: (splitter: FrameSplitter) => void): Promise<number> {
  const before = inUse()
  const splitter = new FrameSplitter()
  splitter.on('error', () => {})
  feed(splitter)
  await new Promise((resolve) => setImmediate(resolve))
  const held = inUse() - before
  // Gone only a turn of the event loop after it closed: the next measure must not count it.
  splitter.destroy()
  await once(splitter, 'close')
  await new Promise((resolve) => setTimeout(resolve, 20))
  return held
}

/**
 * Runs `connections` clients of `mode` in a child process against a server whose handler never
 * answers, and returns the server's memory per connection once the handshakes are done and
 * once the flood has been sent, with what each client managed to write.
 */
async function serverHolds (mode: ClientMode, connections: number): Promise<{ idle: number, flooded: number, written: number }> {
  const server = createServer({ keyPair: await generateKeyPair({ bits: 2048 }), handler: async () => await new Promise<never>(() => {}) })
  const port = await listenLocal(server)
  const before = inUse()
  const script = fileURLToPath(import.meta.url)
  const clients = spawn(process.execPath, [...process.execArgv, script, mode, String(port), String(connections)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: clients.stdout })[Symbol.asyncIterator]()
  await lines.next() // "ready": every handshake done
  const idle = (inUse() - before) / connections
  clients.stdin.write('go\n')
  const { written } = JSON.parse((await lines.next()).value as string) as { written: number[] }
  // Let the server read what is still on its way.
  await new Promise((resolve) => setTimeout(resolve, 300))
  // Per connection started: a connection the server refused and closed counts too, at what it left.
  const flooded = (inUse() - before) / connections
  clients.stdin.end()
  await once(clients, 'exit')
  await new Promise((resolve) => server.close(resolve))
  return { idle, flooded, written: written.reduce((a, b) => a + b, 0) / written.length }
}

/** Writes whole message frames to `socket` in 64 KiB bursts, as fast as it takes them, for BURST_MS. */
async function burst (socket: net.Socket, serverKey: PublicKey): Promise<number> {
  const frame = Buffer.concat([encodeBase64(encryptMessage(serverKey, 'a request the server never answers')), Buffer.from([EOT])])
  const bytes = Buffer.concat(Array.from({ length: Math.ceil(64 * 1024 / frame.length) }, () => frame))
  const deadline = Date.now() + BURST_MS
  let written = 0
  while (Date.now() < deadline && !socket.destroyed) {
    const more = socket.write(bytes)
    written += bytes.length
    // The server stops reading when full: wait for room, but never past the deadline.
    let timer: NodeJS.Timeout | undefined
    if (!more) await Promise.race([once(socket, 'drain'), new Promise((resolve) => { timer = setTimeout(resolve, deadline - Date.now()) })])
    else await new Promise((resolve) => setImmediate(resolve))
    clearTimeout(timer)
  }
  return written
}

/** Writes TRICKLE_BYTES of Base64 text and no terminator to `socket`, one byte a write. */
async function trickle (socket: net.Socket): Promise<number> {
  socket.setNoDelay(true)
  const byte = Buffer.from('A')
  const deadline = Date.now() + TRICKLE_MS
  let written = 0
  while (written < TRICKLE_BYTES && Date.now() < deadline && !socket.destroyed) {
    written++
    // Room again, or the server hung up (once() would reject on the socket's error).
    if (!socket.write(byte)) await new Promise((resolve) => { socket.once('drain', resolve).once('close', resolve) })
  }
  return written
}

/**
 * The client process: handshakes on `connections` connections, prints "ready", floods on a line
 * of stdin, prints what each wrote as JSON, and leaves once stdin ends.
 */
async function runClients (mode: ClientMode, port: number, connections: number): Promise<void> {
  const keys = await clientKeys()
  const peers = await Promise.all(Array.from({ length: connections }, async (_, i) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
    // The server refuses a trickled frame long before its end now: writes after that fail.
    socket.on('error', () => {})
    const channel = wrap(socket, { role: 'client', keyPair: keys[i % keys.length]!, handshakeTimeout: 60_000 })
    const [peer] = await once(channel, 'handshake') as [PeerInfo]
    // The server may hang up mid-flood: that shows in the bytes written, not as a crash.
    channel.on('error', () => {})
    return { socket, channel, serverKey: peer.publicKey }
  }))
  const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  process.stdout.write('ready\n')
  await stdin.next()
  // The frames go straight onto the socket, under the channel, which has nothing more to say.
  const written = await Promise.all(peers.map(async ({ socket, serverKey }) => mode === 'burst' ? await burst(socket, serverKey) : await trickle(socket)))
  printResult({ written })
  await stdin.next()
  for (const { channel } of peers) channel.destroy()
  process.exit(0)
}

async function main (): Promise<void> {
  if (globalThis.gc === undefined) console.log('(run node with --expose-gc for exact figures)')
  const floodChunk = (splitter: FrameSplitter): void => { splitter.write(Buffer.alloc(64 * 1024, EOT)) }
  // Once unmeasured first: what start-up left to collect would otherwise count against it.
  await splitterHolds(floodChunk)
  const chunk = await splitterHolds(floodChunk)
  const source = Buffer.alloc(TRICKLE_BYTES, 0x41)
  const trickled = await splitterHolds((splitter) => {
    for (let i = 0; i < TRICKLE_BYTES; i++) splitter.write(source.subarray(i, i + 1))
  })
  const burstServer = await serverHolds('burst', BURST_CONNECTIONS)
  const trickleServer = await serverHolds('trickle', 1)
  const rows: Array<[string, string, string]> = [
    ['(a) one FrameSplitter, one 64 KiB chunk of 0x04, no reader', kib(chunk), ''],
    [`(b) one FrameSplitter, ${TRICKLE_BYTES.toLocaleString('en-US')} bytes a byte at a time`, kib(trickled), ''],
    [`(c) server per connection, ${BURST_CONNECTIONS} clients bursting frames ${BURST_MS / 1000} s, handler never answers`, kib(burstServer.flooded),
      `idle ${kib(burstServer.idle)}; ${kib(burstServer.written)} written per client`],
    [`(d) server per connection, 1 client trickling ${TRICKLE_BYTES.toLocaleString('en-US')} bytes a byte per write`, kib(trickleServer.flooded),
      `idle ${kib(trickleServer.idle)}; ${kib(trickleServer.written)} written`]
  ]
  const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length)))
  console.log('memory held (heapUsed + arrayBuffers after gc)')
  for (const row of rows) console.log(row.map((cell, column) => column === 1 ? cell.padStart(widths[1]!) : cell.padEnd(widths[column]!)).join('  ').trimEnd())
}

const [mode] = process.argv.slice(2)
if (mode === 'burst' || mode === 'trickle') {
  const [, port, connections] = numericArguments<[number, number, number]>()
  await runClients(mode, port, connections)
} else {
  await main()
}
