// Server limits and worker pools (issue 5): maxConnections, maxPendingHandshakes, idleTimeout,
// and many concurrent channels through a pooled server.
import { expect } from 'chai'
import crypto from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import {
  P2snError, RsaPool, connect, createServer, encryptMessage, generateKeyPair,
  type Channel, type KeyPair, type Server, type ServerOptions
} from '../lib/index.js'
import { countingEngine } from './helpers/counting-engine.js'
import { listenLocal } from './helpers/net.js'
import { delay } from './helpers/timing.js'

/** Frames a raw client sends by hand. */
const PUBKEY_FRAME = Buffer.from('P2SN:PUBKEY\x04')

describe('server limits and worker pools', function () {
  this.timeout(60_000)
  let serverKeys: KeyPair
  let clientKeys: KeyPair[]
  const servers: Server[] = []
  const closeables: Array<{ destroy (): unknown }> = []

  before(async () => {
    serverKeys = await generateKeyPair({ bits: 1024 })
    clientKeys = await Promise.all([1, 2, 3, 4].map(async () => generateKeyPair({ bits: 1024 })))
  })

  afterEach(async () => {
    for (const c of closeables.splice(0)) c.destroy()
    await Promise.all(servers.splice(0).map(async (server) => new Promise((resolve) => server.close(resolve))))
  })

  async function listen (options: ServerOptions): Promise<{ server: Server, port: number }> {
    const server = createServer({ keyPair: serverKeys, handler: (m) => m, ...options })
    servers.push(server)
    return { server, port: await listenLocal(server) }
  }

  function client (port: number, i = 0): Channel {
    const channel = connect({ port, keyPair: clientKeys[i % clientKeys.length]! })
    channel.on('error', () => {})
    closeables.push(channel)
    return channel
  }

  async function rawSocket (port: number): Promise<net.Socket> {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    closeables.push(socket)
    await once(socket, 'connect')
    return socket
  }

  describe('maxConnections', () => {
    it('refuses connections beyond it with ERR_P2SN_SERVER_BUSY while existing channels keep working', async () => {
      const { server, port } = await listen({ maxConnections: 2 })
      const errors: P2snError[] = []
      server.on('clientError', (err: P2snError) => errors.push(err))
      const first = client(port, 0)
      const second = client(port, 1)
      expect((await first.request('one')).toString()).to.equal('one')
      expect((await second.request('two')).toString()).to.equal('two')

      const refused = await rawSocket(port)
      await once(refused, 'close')
      expect(errors.map((e) => e.code)).to.deep.equal(['ERR_P2SN_SERVER_BUSY'])
      expect(server.connections).to.equal(2)

      expect((await first.request('still here')).toString()).to.equal('still here')
      second.destroy()
      await once(second, 'close')
      // A slot is free again.
      expect((await client(port, 2).request('three')).toString()).to.equal('three')
    })
  })

  describe('maxPendingHandshakes', () => {
    it('drops the oldest handshake under way for a new connection; the dropped one gets no more RSA work', async () => {
      const counting = countingEngine()
      const { server, port } = await listen({ maxPendingHandshakes: 2, engine: counting.engine })
      const codes: string[] = []
      server.on('clientError', (err: P2snError) => codes.push(err.code))
      // Two connections that start a handshake and stall: the server sent its key, no RSA yet.
      const stallers = await Promise.all([rawSocket(port), rawSocket(port)])
      for (const socket of stallers) {
        socket.write(PUBKEY_FRAME)
        await once(socket, 'data')
      }
      const firstClosed = once(stallers[0]!, 'close')
      const newcomer = client(port, 0)
      await once(newcomer, 'handshake')
      await firstClosed
      expect(codes).to.deep.equal(['ERR_P2SN_SERVER_BUSY'])
      expect(stallers[1]!.destroyed).to.equal(false)
      expect(counting.decrypted()).to.equal(1) // the newcomer's key check, and nothing else
      expect((await newcomer.request('through')).toString()).to.equal('through')
      expect(server.connections).to.equal(2)
    })

    it('lets a real client through a flood of silent connections at once, not after their timeouts', async () => {
      const { server, port } = await listen({ maxPendingHandshakes: 8, handshakeTimeout: 20_000 })
      server.on('clientError', () => {})
      await Promise.all(Array.from({ length: 40 }, async () => rawSocket(port)))
      const started = Date.now()
      expect((await client(port, 1).request('served')).toString()).to.equal('served')
      expect(Date.now() - started).to.be.below(2000)
      expect(server.connections).to.be.at.most(9)
    })
  })

  describe('idleTimeout', () => {
    it('closes a channel with no message either way for that long, and spares a busy one', async () => {
      const { server, port } = await listen({ idleTimeout: 250 })
      const codes: string[] = []
      server.on('clientError', (err: P2snError) => codes.push(err.code))
      const idle = client(port, 0)
      const busy = client(port, 1)
      expect(server.connections).to.be.at.most(2)
      await Promise.all([idle.request('hi'), busy.request('hi')])
      // The server closes its side; the client, half-open like a socket, sees the end.
      const idleEnded = once(idle, 'end')
      idle.resume()
      for (let i = 0; i < 8; i++) {
        await delay(80)
        expect((await busy.request(`ping ${i}`)).toString()).to.equal(`ping ${i}`)
      }
      await idleEnded
      expect(codes).to.deep.equal(['ERR_P2SN_IDLE_TIMEOUT'])
      expect(busy.destroyed).to.equal(false)
    })

    it('refuses an idleTimeout that is not a whole number', () => {
      for (const idleTimeout of [-1, 1.5, Number.NaN]) {
        expect(() => createServer({ idleTimeout })).to.throw(P2snError).with.property('code', 'ERR_P2SN_INVALID_ARGUMENT')
        expect(() => connect({ port: 1, idleTimeout })).to.throw(P2snError).with.property('code', 'ERR_P2SN_INVALID_ARGUMENT')
      }
    })
  })

  describe('worker pools', () => {
    it('serves 200 concurrent channels × 20 random-size messages through a pooled server: every reply right, in order', async () => {
      const { port } = await listen({ workers: 2 })
      const channels = Array.from({ length: 200 }, (_, i) => client(port, i))
      let replies = 0
      await Promise.all(channels.map(async (channel) => {
        for (let j = 0; j < 20; j++) {
          // Up to four 1024-bit blocks: the multi-block extension included.
          const message = crypto.randomBytes(crypto.randomInt(0, 470))
          const reply = await channel.request(message)
          expect(reply.equals(message)).to.equal(true)
          replies++
        }
      }))
      expect(replies).to.equal(4000)
      for (const channel of channels) channel.end()
      await Promise.all(channels.map(async (channel) => channel.destroyed ? undefined : once(channel, 'close')))
    })

    it('a pool whose queue is full slows handshakes and channels down instead of failing them', async () => {
      const pool = new RsaPool({ workers: 1, maxQueue: 2 })
      try {
        const { server, port } = await listen({ pool })
        const errors: string[] = []
        server.on('clientError', (err: P2snError) => errors.push(err.code))
        const channels = Array.from({ length: 20 }, (_, i) => client(port, i))
        await Promise.all(channels.map(async (channel, i) => {
          for (let j = 0; j < 5; j++) expect((await channel.request(`${i}:${j}`)).toString()).to.equal(`${i}:${j}`)
        }))
        expect(errors).to.deep.equal([])
      } finally {
        await pool.close()
      }
    })

    it('uses a pool passed as pool for every channel and leaves it open after close()', async () => {
      const pool = new RsaPool({ workers: 1 })
      const decrypt = pool.decrypt.bind(pool)
      let calls = 0
      pool.decrypt = async (...args) => { calls++; return decrypt(...args) }
      const { server, port } = await listen({ pool })
      expect((await client(port).request('pooled')).toString()).to.equal('pooled')
      expect(calls, 'the key check and the request').to.equal(2)
      await new Promise((resolve) => server.close(resolve))
      servers.length = 0
      const keys = clientKeys[0]!
      expect((await pool.decrypt(keys.privateKey, encryptMessage(keys, 'after'))).toString()).to.equal('after')
      await pool.close()
    })
  })
})
