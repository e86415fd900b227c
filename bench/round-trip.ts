/**
 * Benchmark of issue 3: request/reply round trips per second over loopback TCP with 2048-bit
 * keys (client and server in this process) against the OpenSSL bound for a round trip (two
 * public and two private operations), and handshakes per second against theirs.
 */
import crypto from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { connect, createServer, generateKeyPair, type Channel, type KeyPair } from '../lib/index.js'
import { alternate, formatRate } from './measure.js'

const MESSAGE = crypto.randomBytes(100)

/** `count` × (public + private operation) pairs, the way the protocol spends them. */
function makeBound (keys: KeyPair, pairs: number): (count: number) => void {
  const pub = keys.publicKey.keyObject
  const priv = keys.privateKey.keyObject
  return (count) => {
    for (let i = 0; i < count * pairs; i++) {
      const ct = crypto.publicEncrypt({ key: pub, padding: crypto.constants.RSA_PKCS1_PADDING }, MESSAGE)
      crypto.privateDecrypt({ key: priv, padding: crypto.constants.RSA_NO_PADDING }, ct)
    }
  }
}

async function handshake (port: number, keyPair: KeyPair): Promise<Channel> {
  const channel = connect({ port, keyPair })
  await new Promise((resolve, reject) => {
    channel.once('handshake', resolve)
    channel.once('error', reject)
  })
  return channel
}

/** Runs the benchmark and prints its lines. */
export async function benchRoundTrip (): Promise<void> {
  const serverKeys = await generateKeyPair({ bits: 2048 })
  const clientKeys = await generateKeyPair({ bits: 2048 })
  const server = createServer({ keyPair: serverKeys, handler: (message) => message })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const channel = await handshake(port, clientKeys)

  const requests = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) await channel.request(MESSAGE)
  }
  const handshakes = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) (await handshake(port, clientKeys)).destroy()
  }
  const trips = await alternate({ bound: makeBound(serverKeys, 2), requests }, { slices: 10, count: 300 })
  const shakes = await alternate({ bound: makeBound(serverKeys, 2), handshakes }, { slices: 5, count: 40 })
  channel.destroy()
  await new Promise((resolve) => server.close(resolve))

  console.log('request/reply over loopback TCP, 2048-bit keys both sides, 100-byte messages, one process')
  console.log(`  openssl bound (2 public + 2 private ops): ${formatRate(trips.bound)}`)
  console.log(`  round trips:                            ${formatRate(trips.requests)}  ratio ${(trips.requests / trips.bound).toFixed(3)}× the bound (target ≥ 0.85×)`)
  console.log(`  handshakes:                             ${formatRate(shakes.handshakes)}  ratio ${(shakes.handshakes / shakes.bound).toFixed(3)}× the same bound (a handshake also spends 2 public + 2 private ops)`)
}
