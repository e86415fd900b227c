/**
 * `createClient()` (issue 13): a client that keeps one channel open and survives server
 * restarts. A request that never went out is sent on the next channel; one that went out on a
 * channel that then dropped fails with `ERR_P2SN_CLOSED` and `sent: true`, and is never sent
 * again. Reconnects back off; `requestTimeout` bounds every request, `maxQueuedRequests` the
 * number waiting; `close()` leaves nothing running. And `connect()`'s `keepAlive`.
 */
import { once } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'
import { readFileSync } from 'node:fs'
import { expect } from 'chai'
import {
  Channel, connect, createClient, createServer, generateKeyPair,
  type Client, type ClientOptions, type Handler, type KeyPair, type PeerInfo, type Server
} from '../lib/index.js'
import { expectP2snError, expectP2snErrorSync } from './helpers/errors.js'
import { listenLocal, relayTo, unusedPort } from './helpers/net.js'
import { delay, expectNoLeakedResources, resourceBaseline, until, within } from './helpers/timing.js'

const TLS_KEY = readFileSync(new URL('./fixtures/tls/key.pem', import.meta.url))
const TLS_CERT = readFileSync(new URL('./fixtures/tls/cert.pem', import.meta.url))

/** A server of the tests, with the channels it has open and the TCP connections it accepted. */
interface TestServer {
  server: Server
  port: number
  channels: Set<Channel>
  connections: () => number
  /** Stops listening and destroys every channel (not a drain); resolves once all are gone. */
  stop: () => Promise<void>
}

/** What a client emitted, in order. */
interface Seen {
  events: Array<'connect' | 'disconnect'>
  peers: PeerInfo[]
  channels: Channel[]
  disconnects: Error[]
}

describe('createClient: a client that survives restarts', function () {
  this.timeout(20_000)
  let serverKeys: KeyPair
  let clientKeys: KeyPair
  let baseline: Record<string, number> | undefined
  const closers: Array<() => Promise<void>> = []
  before(async () => {
    [serverKeys, clientKeys] = await Promise.all([generateKeyPair({ bits: 1024 }), generateKeyPair({ bits: 1024 })])
  })
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close()
  })

  /** A server answering with `handler`, on `port` (0: a free one). */
  async function serve (handler: Handler, port = 0): Promise<TestServer> {
    const server = createServer({ keyPair: serverKeys, handler })
    server.on('clientError', () => {})
    const channels = new Set<Channel>()
    server.on('channel', (channel) => {
      channels.add(channel)
      channel.on('close', () => channels.delete(channel))
    })
    let accepted = 0
    server.server.on('connection', () => { accepted++ })
    let stopping: Promise<void> | undefined
    const stop = (): Promise<void> => {
      stopping ??= within(5000, new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        for (const channel of channels) channel.destroy()
      }), 'the server\'s close')
      return stopping
    }
    closers.push(stop)
    await new Promise<void>((resolve) => { server.listen(port, '127.0.0.1', resolve) })
    return { server, port: (server.address() as net.AddressInfo).port, channels, connections: () => accepted, stop }
  }

  /** A client of `port`, closed after the test, and what it emits. */
  function client (port: number, options: Partial<ClientOptions> = {}): { client: Client, seen: Seen } {
    const made = createClient({ host: '127.0.0.1', port, keyPair: clientKeys, ...options })
    const seen: Seen = { events: [], peers: [], channels: [], disconnects: [] }
    made.on('connect', (channel, peer) => {
      seen.events.push('connect')
      seen.channels.push(channel)
      seen.peers.push(peer)
    })
    made.on('disconnect', (error) => {
      seen.events.push('disconnect')
      seen.disconnects.push(error)
    })
    closers.push(async () => {
      const closed = made.close()
      // A channel whose server never answers would hold close() up: drop them all.
      for (const channel of seen.channels) channel.destroy()
      await within(5000, closed, 'the client\'s close')
    })
    return { client: made, seen }
  }

  const echo: Handler = (message) => `re: ${message.toString()}`

  describe('beforehand', function () {
    it('counts the handles open before any client (mocha\'s own: its stdio, this test\'s timeout)', async () => {
      baseline = await resourceBaseline()
    })
  })

  describe('requests and restarts', function () {
    it('answers requests in order, made before and after it connects; \'connect\' gives the channel and a PeerInfo', async () => {
      const { port } = await serve(echo)
      const { client: c, seen } = client(port)
      const early = [c.request('one'), c.request(Buffer.from('two'))]
      const [channel, peer] = await once(c, 'connect') as [Channel, PeerInfo]
      expect(channel).to.be.an.instanceof(Channel)
      expect(peer.fingerprint).to.equal(serverKeys.publicKey.fingerprint)
      expect(peer.publicKey.equals(serverKeys.publicKey)).to.equal(true)
      expect(peer.role).to.equal('client')
      expect(peer.authenticated).to.equal(false)
      const late = [c.request('three'), c.request(new Uint8Array([0x66, 0x6f, 0x75, 0x72]))]
      const replies = await Promise.all([...early, ...late])
      expect(replies.map(String)).to.deep.equal(['re: one', 're: two', 're: three', 're: four'])
      expect(seen.events).to.deep.equal(['connect'])
    })

    it('a server restart on the same port: the requests made while it is down are answered by the new one, after \'disconnect\' then \'connect\'', async () => {
      const first = await serve((message) => `first: ${message.toString()}`)
      // No 'error' listener: a server going away must crash nobody.
      const { client: c, seen } = client(first.port)
      expect(String(await c.request('before'))).to.equal('first: before')
      const dropped = once(c, 'disconnect')
      await first.stop()
      await dropped
      const during = [c.request('during 1'), c.request('during 2')]
      await delay(200)
      await serve((message) => `second: ${message.toString()}`, first.port)
      const replies = await within(5000, Promise.all(during), 'the replies of the new server')
      expect(replies.map(String)).to.deep.equal(['second: during 1', 'second: during 2'])
      expect(seen.events[0]).to.equal('connect')
      expect(seen.events[1]).to.equal('disconnect')
      expect(seen.events.at(-1)).to.equal('connect')
      expect(seen.events.filter((event) => event === 'connect')).to.have.length(2)
      expect(seen.channels[0]).to.not.equal(seen.channels[1])
      expect(c.listenerCount('error')).to.equal(0)
    })

    it('a server that drains (server.close()) and comes back: the request in flight gets its reply, and the next goes to the new server', async () => {
      const first = await serve(async (message) => {
        await delay(100)
        return `first: ${message.toString()}`
      })
      const { client: c, seen } = client(first.port)
      await once(c, 'connect')
      const inFlight = c.request('in flight')
      await delay(30)
      const drained = new Promise<void>((resolve) => { first.server.close(() => { resolve() }) })
      expect(String(await inFlight)).to.equal('first: in flight')
      await within(2000, drained, 'the drain')
      const next = c.request('next')
      await delay(100)
      await serve((message) => `second: ${message.toString()}`, first.port)
      expect(String(await within(5000, next, 'the reply of the new server'))).to.equal('second: next')
      expect(seen.events[0]).to.equal('connect')
      expect(seen.events[1]).to.equal('disconnect')
      expect(seen.disconnects[0]!.message).to.include('ended the channel')
      expect(seen.events.at(-1)).to.equal('connect')
    })

    it('a request in flight when the server drops the channel fails with ERR_P2SN_CLOSED, sent true, and is not sent again; the one behind it is', async () => {
      const calls = new Map<string, number>()
      const { port } = await serve((message, channel) => {
        const text = message.toString()
        calls.set(text, (calls.get(text) ?? 0) + 1)
        if (text !== 'die') return `re: ${text}`
        channel.destroy()
        return new Promise<string>(() => {})
      })
      const { client: c, seen } = client(port)
      const dying = expectP2snError(c.request('die'), 'ERR_P2SN_CLOSED')
      const behind = c.request('behind')
      const err = await dying
      expect(err.sent).to.equal(true)
      expect(String(await behind)).to.equal('re: behind')
      expect(String(await c.request('after'))).to.equal('re: after')
      await delay(200)
      expect(calls.get('die')).to.equal(1)
      expect(calls.get('behind')).to.equal(1)
      expect(seen.events.filter((event) => event === 'connect')).to.have.length(2)
    })

    it('a frozen server: requestTimeout fails the request with ERR_P2SN_REQUEST_TIMEOUT, sent true, and the next goes out on a fresh channel', async () => {
      const { port, server } = await serve((message) => message.toString() === 'freeze' ? new Promise<string>(() => {}) : `re: ${message.toString()}`)
      let served = 0
      server.on('channel', () => { served++ })
      const { client: c, seen } = client(port, { requestTimeout: 300 })
      await once(c, 'connect')
      const started = Date.now()
      const err = await expectP2snError(c.request('freeze'), 'ERR_P2SN_REQUEST_TIMEOUT')
      expect(Date.now() - started).to.be.within(250, 2000)
      expect(err.sent).to.equal(true)
      expect(err.message).to.include('300 ms')
      expect(String(await c.request('hello'))).to.equal('re: hello')
      expect(served).to.equal(2)
      expect(seen.events).to.deep.equal(['connect', 'disconnect', 'connect'])
    })
  })

  describe('with no server up', function () {
    it('requestTimeout fails a request in time, unsent; the attempts back off, each a \'disconnect\'', async () => {
      const port = await unusedPort()
      const { client: c, seen } = client(port, { requestTimeout: 300 })
      const started = Date.now()
      const err = await expectP2snError(c.request('anyone?'), 'ERR_P2SN_REQUEST_TIMEOUT')
      expect(Date.now() - started).to.be.within(250, 1500)
      expect(err.sent).to.equal(false)
      await delay(1000 - (Date.now() - started))
      // Full jitter on 100 ms doubling: about 5 attempts in a second; a spin would make thousands.
      expect(seen.disconnects.length).to.be.within(1, 15)
      expect(seen.disconnects[0]).to.have.property('code', 'ERR_P2SN_CONNECTION')
      expect(seen.events).to.not.include('connect')
    })

    it('a server that hangs up on every connection: the attempts over a second stay few', async () => {
      const hangUp = net.createServer((socket) => { socket.destroy() })
      closers.push(() => new Promise<void>((resolve) => { hangUp.close(() => { resolve() }) }))
      let accepted = 0
      hangUp.on('connection', () => { accepted++ })
      const port = await listenLocal(hangUp)
      const { client: c } = client(port)
      const pending = expectP2snError(c.request('hello'), 'ERR_P2SN_CLOSED')
      await delay(1000)
      expect(accepted).to.be.within(2, 15)
      await c.close()
      expect((await pending).sent).to.equal(false)
    })

    it('a server that completes each handshake and drops it at once: the backoff still grows (each costs it RSA work)', async () => {
      const dropping = await serve(echo)
      dropping.server.on('channel', (channel) => { channel.destroy() })
      client(dropping.port)
      await delay(2000)
      // 100 ms doubling, full jitter: a handful in two seconds. Reset at every handshake, it was ~40.
      expect(dropping.connections()).to.be.within(2, 12)
    })

    it('maxQueuedRequests: the request beyond the bound fails at once with ERR_P2SN_CLIENT_BUSY, unsent; those waiting are answered once a server is up', async () => {
      const port = await unusedPort()
      const { client: c, seen } = client(port, { maxQueuedRequests: 3, reconnect: { initialDelay: 20, maxDelay: 50 } })
      const waiting = [c.request('one'), c.request('two'), c.request('three')]
      const err = await within(50, expectP2snError(c.request('four'), 'ERR_P2SN_CLIENT_BUSY'), 'the refusal')
      expect(err.sent).to.equal(false)
      expect(err.message).to.include('maxQueuedRequests')
      expect(seen.events).to.not.include('connect')
      const run: string[] = []
      await serve((message) => {
        run.push(message.toString())
        return `re: ${message.toString()}`
      }, port)
      const replies = await within(5000, Promise.all(waiting), 'the replies of the server')
      expect(replies.map(String)).to.deep.equal(['re: one', 're: two', 're: three'])
      // The one refused never went out; with room again, a new one does.
      expect(String(await c.request('five'))).to.equal('re: five')
      expect(run).to.deep.equal(['one', 'two', 'three', 'five'])
    })
  })

  describe('reconnect: false', function () {
    it('once the channel drops, requests fail with ERR_P2SN_CLOSED, sent false, and nothing reconnects', async () => {
      const first = await serve(echo)
      const { client: c, seen } = client(first.port, { reconnect: false })
      expect(String(await c.request('one'))).to.equal('re: one')
      const dropped = once(c, 'disconnect')
      for (const channel of first.channels) channel.destroy()
      await dropped
      const err = await expectP2snError(c.request('two'), 'ERR_P2SN_CLOSED')
      expect(err.sent).to.equal(false)
      expect(err.message).to.include('reconnect is off')
      await delay(300)
      expect(first.connections()).to.equal(1)
      expect(seen.events).to.deep.equal(['connect', 'disconnect'])
    })

    it('a first attempt that fails fails the waiting requests unsent', async () => {
      const { client: c, seen } = client(await unusedPort(), { reconnect: false })
      const err = await expectP2snError(c.request('hello'), 'ERR_P2SN_CLOSED')
      expect(err.sent).to.equal(false)
      expect(seen.disconnects).to.have.length(1)
    })
  })

  describe('close()', function () {
    it('fails the requests not sent, lets the one in flight finish, ends the channel, and nothing reconnects or keeps running', async () => {
      const ended: Channel[] = []
      const test = await serve(async (message) => {
        await delay(200)
        return `re: ${message.toString()}`
      })
      test.server.on('channel', (channel) => { channel.on('end', () => { ended.push(channel) }) })
      const timersBefore = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
      const { client: c, seen } = client(test.port, { requestTimeout: 5000 })
      await once(c, 'connect')
      const inFlight = c.request('first')
      const waiting = expectP2snError(c.request('second'), 'ERR_P2SN_CLOSED')
      await delay(50)
      const closed = c.close()
      expect((await waiting).sent).to.equal(false)
      expect(String(await inFlight)).to.equal('re: first')
      await within(2000, closed, 'close()')
      expect(ended).to.have.length(1)
      const after = await expectP2snError(c.request('third'), 'ERR_P2SN_CLOSED')
      expect(after.sent).to.equal(false)
      expect(c.close()).to.equal(closed)
      expect(seen.events).to.deep.equal(['connect', 'disconnect'])
      // No retry timer, no request timer: nothing of the client's left to run.
      const timersAfter = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
      expect(timersAfter).to.be.at.most(timersBefore)
      await delay(500)
      expect(test.connections()).to.equal(1)
    })

    it('while it waits to retry: the waiting requests fail unsent at once, the retry is called off, and no timer is left', async () => {
      const port = await unusedPort()
      const timersBefore = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
      const { client: c, seen } = client(port, { reconnect: { initialDelay: 300, maxDelay: 300 } })
      const waiting = [c.request('a'), c.request('b')].map((request) => expectP2snError(request, 'ERR_P2SN_CLOSED'))
      // The first attempt failed: the next waits up to 300 ms, and close() comes before it.
      await once(c, 'disconnect')
      await within(200, c.close(), 'close()')
      for (const err of await Promise.all(waiting)) expect(err.sent).to.equal(false)
      expect(process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length).to.be.at.most(timersBefore)
      // A server comes up on that port: the closed client never calls.
      const late = net.createServer((socket) => { socket.destroy() })
      let accepted = 0
      late.on('connection', () => { accepted++ })
      closers.push(() => new Promise<void>((resolve) => { late.close(() => { resolve() }) }))
      await new Promise<void>((resolve) => { late.listen(port, '127.0.0.1', resolve) })
      await delay(500)
      expect(accepted).to.equal(0)
      expect(seen.disconnects).to.have.length(1)
    })
  })

  describe('drains, limits and options', function () {
    it('a server that ends the channel after answering (a drain): the client reconnects for the next request', async () => {
      const test = await serve((message, channel) => {
        setImmediate(() => { if (!channel.writableEnded) channel.end() })
        return `re: ${message.toString()}`
      })
      const { client: c, seen } = client(test.port)
      const dropped = once(c, 'disconnect')
      expect(String(await c.request('one'))).to.equal('re: one')
      const [error] = await dropped as [Error]
      expect(error).to.have.property('code', 'ERR_P2SN_CLOSED')
      expect(error.message).to.include('ended the channel')
      expect(String(await c.request('two'))).to.equal('re: two')
      expect(test.connections()).to.equal(2)
      expect(seen.events).to.deep.equal(['connect', 'disconnect', 'connect'])
    })

    it('a server that ends an idle channel, no request ever made on it: the client sees it and reconnects', async () => {
      let served = 0
      const test = await serve(echo)
      test.server.on('channel', (channel) => { if (++served === 1) channel.end() })
      const { client: c, seen } = client(test.port)
      const [error] = await within(2000, once(c, 'disconnect'), 'the disconnect') as [Error]
      expect(error.message).to.include('ended the channel')
      await until(() => seen.events.length === 3, 2000, 'the reconnect')
      expect(String(await c.request('hi'))).to.equal('re: hi')
      expect(seen.events).to.deep.equal(['connect', 'disconnect', 'connect'])
    })

    it('a connection reset after the request went out: ERR_P2SN_CLOSED, sent true, the reset as its cause', async () => {
      const { port } = await serve(async (message) => {
        await delay(300)
        return `re: ${message.toString()}`
      })
      // Passes the handshake's three frames and the request's, then resets the client's connection.
      const resetting = relayTo(port, (socket, upstream) => {
        let frames = 0
        socket.on('data', (chunk: Buffer) => {
          upstream.write(chunk)
          for (const byte of chunk) if (byte === 0x04) frames++
          if (frames >= 4) setTimeout(() => { socket.resetAndDestroy(); upstream.destroy() }, 20)
        })
      })
      closers.push(() => new Promise<void>((resolve) => { resetting.close(() => { resolve() }) }))
      const { client: c } = client(await listenLocal(resetting), { reconnect: false })
      const err = await expectP2snError(c.request('hello?'), 'ERR_P2SN_CLOSED')
      expect(err.sent).to.equal(true)
      expect(err.cause).to.have.property('code', 'ECONNRESET')
    })

    it('a channel that carried a reply starts the backoff again: after an outage, a drop is followed by a quick reconnect', async () => {
      // Down for a second: the attempts, 10 ms doubling, wait up to a second or more by the end.
      const hangUp = net.createServer((socket) => { socket.destroy() })
      const port = await listenLocal(hangUp)
      const { client: c, seen } = client(port, { reconnect: { initialDelay: 10, maxDelay: 60_000 } })
      await delay(1000)
      await new Promise<void>((resolve) => { hangUp.close(() => { resolve() }) })
      expect(seen.disconnects.length).to.be.at.least(5)
      const test = await serve(echo, port)
      const [channel] = await within(10_000, once(c, 'connect'), 'the connect') as [Channel]
      // Of use: a reply came over it (a handshake alone no longer resets the backoff).
      expect(String(await c.request('up'))).to.equal('re: up')
      const reconnected = once(c, 'connect')
      channel.destroy()
      const dropped = Date.now()
      await within(2000, reconnected, 'the reconnect')
      expect(Date.now() - dropped).to.be.below(250)
      expect(test.connections()).to.equal(2)
    })

    it('a request too long for the server\'s key fails unsent, and the channel stays up', async () => {
      const { port } = await serve(echo)
      const { client: c, seen } = client(port, { maxMessageBlocks: 1 })
      const err = await expectP2snError(c.request(Buffer.alloc(serverKeys.publicKey.maxBlockPlaintext + 1)), 'ERR_P2SN_MESSAGE_TOO_LONG')
      expect(err.sent).to.equal(false)
      expect(String(await c.request('short'))).to.equal('re: short')
      expect(seen.events).to.deep.equal(['connect'])
    })

    it('maxQueuedRequests bounds the requests waiting, not the one in flight; 0 lets a request out only on an idle channel', async () => {
      const { port } = await serve(async (message) => {
        await delay(100)
        return `re: ${message.toString()}`
      })
      for (const maxQueuedRequests of [1, 0]) {
        const { client: c } = client(port, { maxQueuedRequests })
        await once(c, 'connect')
        // One in flight and maxQueuedRequests waiting are taken; the next is not.
        const taken = Array.from({ length: maxQueuedRequests + 1 }, (_, i) => `request ${i}`)
        const replies = taken.map(async (request) => c.request(request))
        const err = await within(50, expectP2snError(c.request('over'), 'ERR_P2SN_CLIENT_BUSY'), 'the refusal')
        expect(err.sent).to.equal(false)
        expect((await Promise.all(replies)).map(String)).to.deep.equal(taken.map((request) => `re: ${request}`))
      }
    })

    it('refuses options that cannot work at once, with ERR_P2SN_INVALID_ARGUMENT', async () => {
      const port = await unusedPort()
      const bad: Array<Partial<ClientOptions>> = [
        { requestTimeout: -1 }, { requestTimeout: 1.5 }, { reconnect: 'yes' as never },
        { reconnect: { initialDelay: 0 } }, { reconnect: { initialDelay: 500, maxDelay: 100 } },
        { keepAlive: -1 }, { maxMessageBlocks: 0 },
        { maxQueuedRequests: -1 }, { maxQueuedRequests: 1.5 }, { maxQueuedRequests: Number.NaN }, { maxQueuedRequests: '8' as never }
      ]
      for (const options of bad) {
        expectP2snErrorSync(() => createClient({ port, keyPair: clientKeys, ...options }), 'ERR_P2SN_INVALID_ARGUMENT')
      }
    })
  })

  describe('keepAlive', function () {
    /** The calls of `net.Socket#setKeepAlive` while `action` runs, on which kind of socket. */
    async function keepAliveCalls (action: () => Promise<void>): Promise<Array<[boolean, number, 'tcp' | 'tls']>> {
      const original = net.Socket.prototype.setKeepAlive
      const calls: Array<[boolean, number, 'tcp' | 'tls']> = []
      net.Socket.prototype.setKeepAlive = function (this: net.Socket, enable?: boolean, delay?: number) {
        calls.push([enable ?? false, delay ?? 0, this instanceof tls.TLSSocket ? 'tls' : 'tcp'])
        return original.call(this, enable, delay)
      }
      try {
        await action()
      } finally {
        net.Socket.prototype.setKeepAlive = original
      }
      return calls
    }

    it('connect({ keepAlive }) turns TCP keepalive on with that delay, over TCP and TLS; below a second counts as one', async () => {
      const { port } = await serve(echo)
      const tlsServer = createServer({ keyPair: serverKeys, handler: echo, tls: { key: TLS_KEY, cert: TLS_CERT } })
      closers.push(() => new Promise<void>((resolve) => { tlsServer.close(() => { resolve() }) }))
      const tlsPort = await listenLocal(tlsServer)
      const opened = async (options: Partial<ClientOptions>, on = port): Promise<void> => {
        const channel = connect({ port: on, keyPair: clientKeys, ...options })
        channel.on('error', () => {})
        closers.push(async () => { channel.destroy() })
        expect(String(await channel.request('hi'))).to.equal('re: hi')
      }
      expect(await keepAliveCalls(() => opened({ keepAlive: 1000 }))).to.deep.equal([[true, 1000, 'tcp']])
      expect(await keepAliveCalls(() => opened({ keepAlive: 1000, tls: { ca: TLS_CERT, servername: 'localhost' } }, tlsPort))).to.deep.include([true, 1000, 'tls'])
      expect(await keepAliveCalls(() => opened({ keepAlive: 250 }))).to.deep.equal([[true, 1000, 'tcp']])
      expect(await keepAliveCalls(() => opened({ keepAlive: 0 }))).to.deep.equal([[true, 0, 'tcp']])
      expect(await keepAliveCalls(() => opened({}))).to.deep.equal([])
      expect(await keepAliveCalls(() => opened({ keepAlive: Infinity }))).to.deep.equal([])
    })

    it('createClient passes keepAlive on to each channel', async () => {
      const { port } = await serve(echo)
      const calls = await keepAliveCalls(async () => {
        const { client: c } = client(port, { keepAlive: 2000 })
        expect(String(await c.request('hi'))).to.equal('re: hi')
      })
      expect(calls).to.deep.equal([[true, 2000, 'tcp']])
    })

    for (const keepAlive of [-1, 1.5, Number.NaN, '1000' as never]) {
      it(`keepAlive ${typeof keepAlive === 'string' ? JSON.stringify(keepAlive) : String(keepAlive)} is refused before any socket opens: ERR_P2SN_INVALID_ARGUMENT`, async () => {
        const hangUp = net.createServer((socket) => { socket.destroy() })
        let accepted = 0
        hangUp.on('connection', () => { accepted++ })
        closers.push(() => new Promise<void>((resolve) => { hangUp.close(() => { resolve() }) }))
        const port = await listenLocal(hangUp)
        expectP2snErrorSync(() => connect({ port, keyPair: clientKeys, keepAlive }), 'ERR_P2SN_INVALID_ARGUMENT')
        await delay(50)
        expect(accepted).to.equal(0)
      })
    }
  })

  describe('afterwards', function () {
    it('leaves no sockets, servers or timers open', async () => {
      await until(async () => {
        await delay(20)
        return process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap').length <= (baseline?.TCPSocketWrap ?? 0)
      }, 2000, 'the sockets closing')
      await expectNoLeakedResources(baseline)
    })
  })
})
