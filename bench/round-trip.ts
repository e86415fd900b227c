/**
 * Benchmark of issue 3: request/reply round trips per second over loopback TCP with 2048-bit
 * keys (client and server in this process) against the OpenSSL bound for a round trip (two
 * public and two private operations), and handshakes per second against theirs.
 */
import crypto from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer, generateKeyPair } from '../lib/index.js'
import { listenLocal } from '../test/helpers/net.js'
import { alternate, formatRate, opensslBound } from './measure.js'

const MESSAGE = crypto.randomBytes(100)

/** Runs the benchmark and prints its lines. */
export async function benchRoundTrip (): Promise<void> {
  const serverKeys = await generateKeyPair({ bits: 2048 })
  const clientKeys = await generateKeyPair({ bits: 2048 })
  const server = createServer({ keyPair: serverKeys, handler: (message) => message })
  const port = await listenLocal(server)
  const channel = connect({ port, keyPair: clientKeys })
  await once(channel, 'handshake')

  const requests = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) await channel.request(MESSAGE)
  }
  const handshakes = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) {
      const fresh = connect({ port, keyPair: clientKeys })
      await once(fresh, 'handshake')
      fresh.destroy()
    }
  }
  const trips = await alternate({ bound: opensslBound(serverKeys, MESSAGE, 2), requests }, { slices: 10, count: 300 })
  const shakes = await alternate({ bound: opensslBound(serverKeys, MESSAGE, 2), handshakes }, { slices: 5, count: 40 })
  channel.destroy()
  await new Promise((resolve) => server.close(resolve))

  console.log('request/reply over loopback TCP, 2048-bit keys both sides, 100-byte messages, one process')
  console.log(`  openssl bound (2 public + 2 private ops): ${formatRate(trips.bound)}`)
  console.log(`  round trips:                            ${formatRate(trips.requests)}  ratio ${(trips.requests / trips.bound).toFixed(3)}× the bound (target ≥ 0.85×)`)
  console.log(`  handshakes:                             ${formatRate(shakes.handshakes)}  ratio ${(shakes.handshakes / shakes.bound).toFixed(3)}× the same bound (a handshake also spends 2 public + 2 private ops)`)
}
