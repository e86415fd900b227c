/**
 * Benchmarks of issues 3 and 11 over loopback TCP with 2048-bit keys, client and server in this
 * process, each against the OpenSSL bound of its RSA work measured in the same run (two public
 * and two private operations, for a round trip as for a handshake): request/reply round trips of
 * a channel, and of a client composed by hand (examples/hand-composed.ts); handshakes one at a
 * time, and four under way at once; and next to round trips and handshakes one at a time, a
 * bare P2SN (bench/bare.ts) for reference, and a floor (bench/floor.ts): the same work with no
 * protocol code, in one loop.
 * For round trips it also times their parts alone (the crypto with the padding checked, and a
 * loopback TCP echo of one frame each way), and estimates from them a round trip of no other code.
 */
import crypto from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import { Transform, type Duplex } from 'node:stream'
import Pumpify from 'pumpify'
import {
  Base64Codec, HandshakeDuplex, RsaCipher, connect, createServer, generateKeyPair, HANDSHAKE_FRAMES, MAX_HANDSHAKE_FRAME_LENGTH,
  type KeyPair, type PeerInfo
} from '../lib/index.js'
import { frameDuplex } from '../lib/frame-duplex.js'
import { listenLocal } from '../test/helpers/net.js'
import { bareClient, bareServer } from './bare.js'
import { handshakeFloor, loopbackEcho, roundTripFloor } from './floor.js'
import { alternate, formatRate, formatUnit, opensslBound, protocolCrypto, type Rates } from './measure.js'

const MESSAGE = crypto.randomBytes(100)
/** Connections handshaking at once in the concurrent figure. */
const CONCURRENT_HANDSHAKES = 4

/** A request/reply client over a channel composed by hand. */
interface ComposedClient {
  request: (message: Buffer) => Promise<Buffer>
  destroy: () => void
}

/**
 * A client channel composed by hand as examples/hand-composed.ts composes it, a layer of one's
 * own included (here one that passes messages on), with a request() of its own.
 */
async function composedClient (port: number, keyPair: KeyPair): Promise<ComposedClient> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true })
  const frames = frameDuplex(socket, { leadingFrames: HANDSHAKE_FRAMES, maxLeadingFrameLength: MAX_HANDSHAKE_FRAME_LENGTH })
  const handshake = new HandshakeDuplex(frames, { role: 'client', keyPair })
  const [peer] = await once(handshake, 'handshake') as [PeerInfo]
  const own = new Transform({ objectMode: true, transform (message: Buffer, _encoding, callback) { callback(null, message) } })
  const channel: Duplex = new Pumpify.obj(
    RsaCipher.encryptor(peer.publicKey), Base64Codec.encoder(), handshake, Base64Codec.decoder(), RsaCipher.decryptor(keyPair), own
  )
  let waiting: ((reply: Buffer) => void) | undefined
  channel.on('data', (reply: Buffer) => {
    const resolve = waiting
    waiting = undefined
    resolve?.(reply)
  })
  return {
    request: async (message) => new Promise<Buffer>((resolve) => {
      waiting = resolve
      channel.write(message)
    }),
    destroy: () => { channel.destroy() }
  }
}

/** Runs the benchmark and prints its lines. */
export async function benchRoundTrip (): Promise<void> {
  const serverKeys = await generateKeyPair({ bits: 2048 })
  const clientKeys = await generateKeyPair({ bits: 2048 })
  const server = createServer({ keyPair: serverKeys, handler: (message) => message })
  const port = await listenLocal(server)
  const channel = connect({ port, keyPair: clientKeys })
  await once(channel, 'handshake')
  const composed = await composedClient(port, clientKeys)
  const bareEnd = await bareServer(serverKeys)
  const bareChannel = await bareClient(bareEnd.port, clientKeys)
  // A handshake spends what a round trip does: 2 public + 2 private ops, with 2048-bit keys both sides.
  const bound = opensslBound(serverKeys, MESSAGE, 2)
  // What a round trip of ours spends whatever its streams: the crypto with the padding checked
  // (implicit rejection, in JavaScript on Node 20), and one frame each way over loopback (a
  // 100-byte message is 345 bytes framed).
  const checked = protocolCrypto(serverKeys, MESSAGE, 2)
  const echo = await loopbackEcho(345)
  const tripFloor = await roundTripFloor(serverKeys, MESSAGE, 345)
  const shakeFloor = await handshakeFloor(serverKeys, clientKeys)

  const check = (reply: Buffer): void => {
    if (!reply.equals(MESSAGE)) throw new Error('a reply differs from its request')
  }
  const requests = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) check(await channel.request(MESSAGE))
  }
  const byHand = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) check(await composed.request(MESSAGE))
  }
  const bare = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) check(await bareChannel.request(MESSAGE))
  }
  const bareHandshakes = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) (await bareClient(bareEnd.port, clientKeys)).destroy()
  }
  const handshake = async (): Promise<void> => {
    const fresh = connect({ port, keyPair: clientKeys })
    await once(fresh, 'handshake')
    fresh.destroy()
  }
  const oneAtATime = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) await handshake()
  }
  // `count` handshakes in all, by loops that each start the next as soon as theirs is done.
  const fourAtOnce = async (count: number): Promise<void> => {
    await Promise.all(Array.from({ length: CONCURRENT_HANDSHAKES }, async (_, loop) => {
      for (let i = loop; i < count; i += CONCURRENT_HANDSHAKES) await handshake()
    }))
  }
  const trips = await alternate({ bound, requests, byHand, bare, floor: tripFloor.run, crypto: checked, echo: echo.run }, { slices: 14, count: 250 })
  const shakes = await alternate({ bound, oneAtATime, fourAtOnce, bareHandshakes, floor: shakeFloor.run }, { slices: 10, count: 40 })
  composed.destroy()
  bareChannel.destroy()
  bareEnd.close()
  echo.close()
  tripFloor.close()
  shakeFloor.close()
  channel.destroy()
  await new Promise((resolve) => server.close(resolve))

  const row = (label: string, figure: string): void => { console.log(`  ${`${label}:`.padEnd(44)} ${figure}`) }
  const line = <K extends string>(label: string, rates: Rates<K>, name: K, note?: string): void => {
    row(label, note === undefined ? formatRate(rates[name]) : `${formatRate(rates[name])}  ratio ${rates.ratio(name, 'bound' as K)} of the bound ${note}`)
  }
  console.log('request/reply over loopback TCP, 2048-bit keys both sides, 100-byte messages, one process')
  line('openssl bound (2 public + 2 private ops)', trips, 'bound')
  line('round trips (connect() and createServer())', trips, 'requests', '(target ≥ 0.93×)')
  line('round trips, client composed by hand', trips, 'byHand', '(frameDuplex, HandshakeDuplex and the layers in pumpify; no target)')
  line('reference: bare P2SN on raw sockets', trips, 'bare', '(bench/bare.ts: the same crypto, no streams)')
  line('floor: the crypto and one frame each way', trips, 'floor', '(bench/floor.ts: in one loop, no other code)')
  line('part: the crypto alone, padding checked', trips, 'crypto', '(encryptMessage, decryptMessage, one after another)')
  row('part: one frame each way, loopback TCP echo', `${formatUnit(trips.echo)} a round trip`)
  row('estimate: the two parts alone, no code else', `${trips.estimate('bound', ['crypto', 'echo'])} of the bound (the bound's time over theirs together; an estimate, not a bound)`)
  console.log('handshakes over loopback TCP, 2048-bit keys, the client\'s key made once (2 public + 2 private ops each)')
  line('openssl bound', shakes, 'bound')
  line('one at a time', shakes, 'oneAtATime', '(target ≥ 0.6×)')
  line(`${CONCURRENT_HANDSHAKES} under way at once`, shakes, 'fourAtOnce', '(target ≥ 0.6×)')
  line('reference: bare P2SN, one at a time', shakes, 'bareHandshakes', '(bench/bare.ts)')
  line('floor: the RSA work in six frames', shakes, 'floor', '(bench/floor.ts: a new loopback connection each, no other code)')
}
