/**
 * What a fleet needs of one server (issue 13): `close()` drains (the requests read get their
 * replies, then each channel is ended; new connections are refused; `drainTimeout` bounds it;
 * a second `close()` or `destroy()` closes at once); a probe that connects and leaves without a
 * byte is no `'clientError'`; `keepAlive`; and each channel knows its peer's address.
 */
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { expect } from 'chai'
import { connect, createServer, wrap, FRAME_TERMINATOR, type Channel, type PeerInfo, type Server, type ServerOptions } from '../lib/index.js'
import { expectP2snError } from './helpers/errors.js'
import { listenLocal } from './helpers/net.js'
import { useLoopbackFixture } from './helpers/loopback.js'

const sleep = async (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

describe('Server: draining, probes, keepalive and addresses', function () {
  this.timeout(20_000)
  const fixture = useLoopbackFixture()
  const { closers } = fixture

  async function start (options: ServerOptions): Promise<{ server: Server, port: number, errors: Error[] }> {
    const server = createServer({ keyPair: fixture.serverKeys, ...options })
    const errors: Error[] = []
    server.on('clientError', (err) => errors.push(err))
    closers.push(() => { server.destroy() })
    return { server, port: await listenLocal(server), errors }
  }

  function client (port: number): Channel {
    const channel = connect({ host: '127.0.0.1', port, keyPair: fixture.clientKeys })
    channel.on('error', () => {})
    closers.push(() => { channel.destroy() })
    return channel
  }

  const closed = async (server: Server): Promise<number> => {
    const started = Date.now()
    await new Promise<void>((resolve) => server.close(() => { resolve() }))
    return Date.now() - started
  }

  describe('close(): a drain', function () {
    it('a request being answered gets its reply; then the channel is ended, and the callback comes once the client has gone', async () => {
      const { server, port } = await start({ handler: async (message) => { await sleep(500); return `re: ${message.toString()}` } })
      const channel = client(port)
      await once(channel, 'handshake')
      const reply = channel.request('slow')
      await sleep(50)
      let callbackAt = 0
      const drained = new Promise<void>((resolve) => server.close(() => { callbackAt = Date.now(); resolve() }))
      expect((await reply).toString()).to.equal('re: slow')
      await once(channel, 'end')
      const endedAt = Date.now()
      channel.end()
      await drained
      expect(callbackAt).to.be.at.least(endedAt)
    })

    it('a request still being decrypted (in a worker) when close() comes is answered too', async () => {
      const holder: { server?: Server } = {}
      const started = await start({
        handler: (message) => `re: ${message.toString()}`,
        workers: 1,
        // Right after the request's frame comes in, while a worker decrypts it.
        trace: (event) => { if (event.direction === 'in' && event.step === 'message') setImmediate(() => holder.server?.close()) }
      })
      holder.server = started.server
      const channel = client(started.port)
      await once(channel, 'handshake')
      expect((await channel.request('late')).toString()).to.equal('re: late')
      await once(channel, 'end')
      channel.end()
    })

    // A server reads a client's requests as its socket hands them over, many in a chunk; while
    // its handler works it takes no more, and the rest of the chunk waits uncut. Those requests
    // were read: a drain must answer them, as it answers those in the channel's buffer.
    for (const [where, options] of [['inline', {}], ['in a worker pool', { workers: 1 }]] as const) {
      it(`requests read in one chunk and still held uncut while the channel pushes back are answered, none dropped (decrypting ${where})`, async () => {
        const count = 16
        const holder: { server?: Server } = {}
        const run: string[] = []
        const started = await start({
          ...options,
          handler: async (message) => {
            // At the first request the whole chunk is in, and the channel is about to push back
            // with most of it uncut: the drain starts then.
            if (run.push(message.toString()) === 1) setImmediate(() => holder.server?.close())
            await sleep(10)
            return `re: ${message.toString()}`
          }
        })
        holder.server = started.server
        // The chunks as the server's socket hands them to the channel.
        const chunks: Buffer[] = []
        started.server.server.on('connection', (socket: net.Socket) => { socket.on('data', (chunk: Buffer) => chunks.push(chunk)) })
        const socket = net.connect({ port: started.port, host: '127.0.0.1' })
        const channel = wrap(socket, { role: 'client', keyPair: fixture.clientKeys })
        channel.on('error', () => {})
        closers.push(() => { channel.destroy() })
        await once(channel, 'handshake')
        const replies: string[] = []
        channel.on('data', (message: Buffer) => replies.push(message.toString()))
        const ended = once(channel, 'end')
        const requests = Array.from({ length: count }, (_, i) => `request ${i}`)
        // All in one TCP write: the socket stays corked until every frame is in it.
        socket.cork()
        await Promise.all(requests.map(async (request) => new Promise<void>((resolve, reject) => {
          channel.write(request, (err) => { if (err === null || err === undefined) resolve(); else reject(err) })
        })))
        socket.uncork()
        await ended
        // The premise: the server's socket handed over every request in one chunk, before close().
        const frames = (chunk: Buffer): number => chunk.reduce((n, byte) => byte === FRAME_TERMINATOR ? n + 1 : n, 0)
        expect(chunks.map(frames)).to.include(count)
        expect(replies).to.deep.equal(requests.map((request) => `re: ${request}`))
        expect(run).to.deep.equal(requests)
        channel.end()
      })
    }

    it('no new connection is accepted once close() is called', async () => {
      const { server, port } = await start({ handler: (message) => message })
      const first = client(port)
      await once(first, 'handshake')
      server.close()
      const late = client(port)
      await expectP2snError(late.request('hello'), 'ERR_P2SN_CONNECTION')
      first.end()
    })

    it('a request read after the drain\'s last answer is not run', async () => {
      let calls = 0
      const { server, port } = await start({ handler: (message) => { calls++; return message } })
      const channel = client(port)
      expect((await channel.request('one')).toString()).to.equal('one')
      server.close()
      await once(channel, 'end')
      // The client had not seen the end when it wrote: the server must not run it.
      channel.write('late')
      await sleep(200)
      expect(calls).to.equal(1)
      channel.end()
    })

    it('a client that never ends is destroyed after drainTimeout, and the callback comes then', async () => {
      const { server, port } = await start({ handler: (message) => message, drainTimeout: 300 })
      const channel = client(port)
      await once(channel, 'handshake')
      const took = await closed(server)
      expect(took).to.be.within(250, 3000)
    })

    it('after drainTimeout, a socket whose client reads nothing is destroyed at once: no linger for the replies it still holds', async () => {
      // Replies of 29 blocks (about 4.6 KiB on the wire at 1024 bits), and a client that keeps
      // sending and reads nothing: its socket stops, and the server's fills with unsent replies.
      let answered = 0
      const { server, port } = await start({ handler: () => { answered++; return Buffer.alloc(29 * 117, 'r') }, drainTimeout: 300 })
      const channel = client(port)
      await once(channel, 'handshake')
      channel.pause()
      for (let i = 0; i < 2000; i++) channel.write('ask')
      // The server stops answering once its socket's buffer is full.
      let before = -1
      while (answered !== before) {
        before = answered
        await sleep(300)
      }
      expect(answered, 'answered while the client read nothing').to.be.within(1, 1999)
      const took = await closed(server)
      // A socket destroyed with unsent bytes would linger a second for them (see release() in
      // channel.ts); the server cuts it at once, so the callback comes soon after drainTimeout.
      expect(took).to.be.within(250, 1000)
    })

    it('a second close() closes everything at once', async () => {
      const { server, port } = await start({ handler: (message) => message, drainTimeout: 10_000 })
      const channel = client(port)
      await once(channel, 'handshake')
      server.close()
      const started = Date.now()
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
      expect(Date.now() - started).to.be.below(2000)
    })

    it('destroy() closes everything at once', async () => {
      const { server, port } = await start({ handler: (message) => message })
      const channel = client(port)
      await once(channel, 'handshake')
      const closing = once(server, 'close')
      const started = Date.now()
      server.destroy()
      await closing
      expect(Date.now() - started).to.be.below(2000)
    })

    it('a handshake under way when close() comes is dropped', async () => {
      const { server, port } = await start({ handler: (message) => message })
      const socket = net.connect({ port, host: '127.0.0.1' })
      socket.on('error', () => {})
      await once(socket, 'connect')
      socket.write('P2SN:PUB')
      await sleep(50)
      const took = await closed(server)
      expect(took).to.be.below(2000)
    })

    it('a channel served without a handler is ended at once, its writes still going out', async () => {
      const received: string[] = []
      const { server, port } = await start({})
      server.on('channel', (channel) => { channel.write('bye') })
      const channel = client(port)
      channel.on('data', (message: Buffer) => received.push(message.toString()))
      await once(channel, 'handshake')
      await sleep(100)
      server.close()
      await once(channel, 'end')
      expect(received).to.deep.equal(['bye'])
      channel.end()
    })

    it('close() drops connections still sending their PROXY header, whatever the handshake timeout', async () => {
      const { server, port } = await start({ handler: (message) => message, proxyProtocol: true, handshakeTimeout: 0, drainTimeout: 200 })
      const socket = net.connect({ port, host: '127.0.0.1' })
      socket.on('error', () => {})
      await once(socket, 'connect')
      socket.write('PROXY TCP4 1.2.')
      await sleep(50)
      expect(server.connections).to.equal(1)
      const took = await closed(server)
      expect(took).to.be.below(1000)
    })

    it('\'close\' is emitted once, however many times close() is called', async () => {
      const { server } = await start({ handler: (message) => message })
      let closes = 0
      server.on('close', () => { closes++ })
      await closed(server)
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
      await sleep(50)
      expect(closes).to.equal(1)
    })

    it('drainTimeout is checked', async () => {
      expect(() => createServer({ keyPair: fixture.serverKeys, drainTimeout: -1 })).to.throw().with.property('code', 'ERR_P2SN_INVALID_ARGUMENT')
    })
  })

  describe('plain TLS', function () {
    it('a connection whose TLS handshake times out is closed, so that close() can finish', async () => {
      const key = readFileSync(new URL('./fixtures/tls/key.pem', import.meta.url))
      const cert = readFileSync(new URL('./fixtures/tls/cert.pem', import.meta.url))
      const { server, port, errors } = await start({ handler: (message) => message, tls: { key, cert, handshakeTimeout: 300 } })
      const socket = net.connect({ port, host: '127.0.0.1' })
      socket.on('error', () => {})
      await once(socket, 'connect')
      const started = Date.now()
      await once(socket, 'close')
      expect(Date.now() - started).to.be.below(2000)
      expect(errors).to.have.length(1)
      expect(await closed(server)).to.be.below(1000)
    })
  })

  describe('probes', function () {
    it('a connection that closes before sending a byte is no clientError', async () => {
      const { port, errors } = await start({ handler: (message) => message })
      for (let i = 0; i < 3; i++) {
        const socket = net.connect({ port, host: '127.0.0.1' })
        await once(socket, 'connect')
        socket.end()
        await once(socket, 'close')
      }
      await sleep(200)
      expect(errors).to.deep.equal([])
    })

    it('one that sends a byte and leaves still is', async () => {
      const { port, errors } = await start({ handler: (message) => message })
      const socket = net.connect({ port, host: '127.0.0.1' })
      await once(socket, 'connect')
      socket.end('P2SN:')
      await once(socket, 'close')
      await sleep(200)
      expect(errors.map((err) => (err as { code?: string }).code)).to.deep.equal(['ERR_P2SN_TRUNCATED'])
    })
  })

  describe('keepAlive and addresses', function () {
    it('keepAlive turns on TCP keepalive for every connection', async () => {
      const calls: Array<[boolean | undefined, number | undefined]> = []
      const original = net.Socket.prototype.setKeepAlive
      net.Socket.prototype.setKeepAlive = function (this: net.Socket, enable?: boolean, delay?: number) {
        calls.push([enable, delay])
        return original.call(this, enable, delay)
      }
      closers.push(() => { net.Socket.prototype.setKeepAlive = original })
      const { port } = await start({ handler: (message) => message, keepAlive: 1500 })
      const channel = client(port)
      await channel.request('hi')
      expect(calls).to.deep.include([true, 1500])
      expect(() => createServer({ keyPair: fixture.serverKeys, keepAlive: -5 })).to.throw().with.property('code', 'ERR_P2SN_INVALID_ARGUMENT')
      // Node counts whole seconds, and 0 s is the system's two hours: 500 ms becomes 1 s.
      calls.length = 0
      const { port: second } = await start({ handler: (message) => message, keepAlive: 500 })
      await client(second).request('hi')
      expect(calls).to.deep.include([true, 1000])
      calls.length = 0
      const { port: third } = await start({ handler: (message) => message, keepAlive: Infinity })
      await client(third).request('hi')
      expect(calls.filter(([enable]) => enable === true)).to.deep.equal([])
    })

    it('each side knows the other\'s address and port, on the channel and in PeerInfo', async () => {
      const { server, port } = await start({ handler: (message) => message })
      const serverSide = once(server, 'channel') as Promise<[Channel, PeerInfo]>
      const channel = client(port)
      const [peer] = await once(channel, 'handshake') as [PeerInfo]
      expect(peer.remoteAddress).to.equal('127.0.0.1')
      expect(peer.remotePort).to.equal(port)
      expect(channel.remoteAddress).to.equal('127.0.0.1')
      const [accepted, clientPeer] = await serverSide
      expect(clientPeer.remoteAddress).to.equal('127.0.0.1')
      expect(accepted.remotePort).to.be.a('number').and.not.equal(port)
      expect(clientPeer.remotePort).to.equal(accepted.remotePort)
    })
  })
})
