/**
 * The load generator of the server-throughput benchmark, run as its own process: opens
 * `connections` P2SN connections with 1024-bit keys, then keeps one request in flight on each
 * for `seconds`. Prints "start" when it starts counting, then the number of replies, how many
 * were decrypted and compared, and the time taken as JSON.
 *
 * Why not full channels (bench/scale-clients.ts runs those too): the point is a server that is
 * the bottleneck, and on this 2-core machine a full client is not cheap. Its 1024-bit private
 * operation alone takes about 77 µs (OpenSSL has no fast path for 1024-bit keys here, so it
 * costs 0.3× a 2048-bit one, not 0.15×), and a whole request about 180 µs: a third of the
 * machine's CPU, which no pool can use. So this generator, built from the library's own parts
 * (FrameJoiner, FrameSplitter, HandshakeDuplex), does a real handshake, encrypts every request
 * afresh to the server's key, checks every reply's framing, Base64 and length, but decrypts
 * only one reply in `checkEvery` and compares it with the request. The server does the same
 * work either way and cannot tell which replies are checked.
 *
 * Usage: node --import tsx bench/scale-load.ts PORT CONNECTIONS SECONDS CHECK_EVERY
 */
import crypto from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import Pumpify from 'pumpify'
import {
  FrameJoiner, FrameSplitter, HandshakeDuplex, decodeBase64, decryptMessage, encodeBase64, encryptMessage,
  type FrameTransport, type PeerInfo
} from '../lib/index.js'
import { clientKeys, countFromStart, numericArguments, printResult } from './scale-client-kit.js'

const [port, connections, seconds, checkEvery] = numericArguments<[number, number, number, number]>()
if (![port, connections, checkEvery].every(Number.isSafeInteger) || !(seconds > 0) || checkEvery < 1) {
  throw new Error('usage: scale-load.ts PORT CONNECTIONS SECONDS CHECK_EVERY (whole numbers; CHECK_EVERY at least 1)')
}
const keys = await clientKeys()
const message = crypto.randomBytes(64)

const peers = await Promise.all(Array.from({ length: connections }, async (_, i) => {
  const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
  const framed = new Pumpify.obj(new FrameJoiner(), socket, new FrameSplitter()) as unknown as FrameTransport
  const handshake = new HandshakeDuplex(framed, { role: 'client', keyPair: keys[i % keys.length]!, handshakeTimeout: 60_000 })
  const [peer] = await once(handshake, 'handshake') as [PeerInfo]
  return { handshake, serverKey: peer.publicKey }
}))

let replies = 0
let checked = 0
let deadline = Infinity
let measuring = false
const warmedUp: Array<Promise<void>> = []
const finished = peers.map(async ({ handshake, serverKey }) => new Promise<void>((resolve, reject) => {
  const keyPair = handshake.keyPair!
  let received = 0
  let warm: () => void
  warmedUp.push(new Promise((resolve) => { warm = resolve }))
  const send = (): void => { handshake.write(encodeBase64(encryptMessage(serverKey, message))) }
  handshake.on('error', reject)
  // The server ending or closing a connection before the deadline is a failure, not a wait.
  const gone = (): void => { reject(new Error('the server closed a connection')) }
  handshake.on('end', gone)
  handshake.on('close', gone)
  handshake.on('data', (frame: Buffer) => {
    try {
      const ciphertext = decodeBase64(frame)
      if (ciphertext.length !== keyPair.publicKey.size) throw new Error(`a ${ciphertext.length}-byte reply, not one block`)
      if (++received % checkEvery === 0) {
        if (!decryptMessage(keyPair, ciphertext).equals(message)) throw new Error('a reply differs from its request')
        checked++
      }
    } catch (err) {
      reject(err as Error)
      return
    }
    if (received === 1) warm()
    if (measuring) replies++
    if (Date.now() < deadline) send()
    else resolve()
  })
  send()
}))
// Count from when every connection has had its first reply (a failure ends the wait too).
await Promise.race([Promise.all(warmedUp), Promise.all(finished)])
const { seconds: elapsed, cpuSeconds } = await countFromStart(async (started) => {
  measuring = true
  deadline = started + seconds * 1000
  await Promise.all(finished)
})
for (const { handshake } of peers) handshake.destroy()
printResult({ replies, checked, seconds: elapsed, cpuSeconds })
