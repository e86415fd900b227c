import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import Pumpify from 'pumpify'
import {
  Channel, connect, createServer, decodeBase64, encodeBase64, encryptMessage, FrameJoiner, FrameSplitter,
  generateKeyPair, HandshakeDuplex, P2snError, parsePublicKey, Server,
  type FrameTransport, type KeyPair, type PeerInfo, type ServerOptions
} from '../lib/index.js'
import { expectP2snError } from './helpers/errors.js'
import { listenLocal } from './helpers/net.js'
import { delay, expectNoLeakedResources, resourceBaseline, settle, within } from './helpers/timing.js'

const TLS_KEY = readFileSync(new URL('./fixtures/tls/key.pem', import.meta.url))
const TLS_CERT = readFileSync(new URL('./fixtures/tls/cert.pem', import.meta.url))

/**
 * A client that speaks the wire by hand: frames sent as they are, frames received one by one.
 * For what our own client would never send.
 */
class RawClient {
  readonly socket: net.Socket
  readonly #frames: Buffer[] = []
  #wake: (() => void) | undefined
  #ended = false

  constructor (port: number) {
    this.socket = net.connect(port, '127.0.0.1')
    this.socket.on('error', () => {})
    const splitter = new FrameSplitter()
    this.socket.pipe(splitter)
    splitter.on('data', (frame: Buffer) => { this.#frames.push(frame); this.#wakeUp() })
    splitter.on('error', () => {})
    this.socket.on('close', () => { this.#ended = true; this.#wakeUp() })
  }

  send (frame: string | Buffer): void {
    this.socket.write(Buffer.concat([Buffer.from(frame), Buffer.from([0x04])]))
  }

  /** The next frame, or null once the server has closed the connection. */
  async next (): Promise<Buffer | null> {
    while (this.#frames.length === 0 && !this.#ended) await new Promise<void>((resolve) => { this.#wake = resolve })
    return this.#frames.shift() ?? null
  }

  #wakeUp (): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }
}

describe('Server', function () {
  this.timeout(20000)

  let serverKeys: KeyPair
  let clientKeys: KeyPair
  let otherKeys: KeyPair
  let baseline: Record<string, number> | undefined
  before(async function () {
    const [s, c, o] = await Promise.all([1024, 1024, 1024].map((bits) => generateKeyPair({ bits })))
    serverKeys = s!
    clientKeys = c!
    otherKeys = o!
  })

  let servers: Server[] = []
  let toDestroy: Array<{ destroy (): unknown }> = []
  afterEach(async function () {
    for (const stream of toDestroy) stream.destroy()
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
    servers = []
    toDestroy = []
  })

  function track<T extends { destroy (): unknown }> (stream: T): T {
    toDestroy.push(stream)
    return stream
  }

  function server (options: ServerOptions, onChannel?: (channel: Channel, peer: PeerInfo) => void): Server {
    const created = createServer(options, onChannel)
    servers.push(created)
    return created
  }

  async function listening (options: ServerOptions, onChannel?: (channel: Channel, peer: PeerInfo) => void): Promise<{ server: Server, port: number }> {
    const created = server(options, onChannel)
    return { server: created, port: await listenLocal(created) }
  }

  function client (port: number, keyPair: KeyPair = clientKeys, options: Partial<Parameters<typeof connect>[0]> = {}): Channel {
    return track(connect({ port, keyPair, ...options }))
  }

  /** A {@link RawClient} on `port`, destroyed after the test. */
  function rawClient (port: number): RawClient {
    const raw = new RawClient(port)
    track(raw.socket)
    return raw
  }

  describe('beforehand', function () {
    it('counts the handles open before any server (mocha\'s own: its stdio, this test\'s timeout)', async () => {
      baseline = await resourceBaseline()
    })
  })

  describe('listening', function () {
    it('listen(port, host, callback) calls back, emits \'listening\', and address() tells the port', async () => {
      const created = server({ keyPair: serverKeys, handler: (m) => m })
      const events: string[] = []
      created.on('listening', () => events.push('event'))
      await new Promise<void>((resolve) => created.listen(0, '127.0.0.1', () => { events.push('callback'); resolve() }))
      expect(events).to.have.members(['event', 'callback'])
      const address = created.address() as net.AddressInfo
      expect(address.address).to.equal('127.0.0.1')
      expect(address.family).to.equal('IPv4')
      expect(address.port).to.be.within(1, 65535)
      expect(created.server.listening).to.equal(true)
      expect(String(await client(address.port).request('hi'))).to.equal('hi')
    })

    it('listen(port, callback) listens on every address', async () => {
      const created = server({ keyPair: serverKeys, handler: (m) => m })
      await new Promise<void>((resolve) => created.listen(0, resolve))
      const { port } = created.address() as net.AddressInfo
      expect(String(await client(port).request('any address'))).to.equal('any address')
    })

    it('emits \'error\' when the port is taken', async () => {
      const { port } = await listening({ keyPair: serverKeys })
      const second = server({ keyPair: serverKeys })
      second.listen(port, '127.0.0.1')
      const [err] = await once(second, 'error') as [NodeJS.ErrnoException]
      expect(err.code).to.equal('EADDRINUSE')
    })

    it('close() stops listening, calls back and emits \'close\'; address() is then null', async () => {
      const { server: created, port } = await listening({ keyPair: serverKeys })
      const closeEvent = once(created, 'close')
      await new Promise<void>((resolve, reject) => created.close((err) => { if (err === undefined) resolve(); else reject(err) }))
      await closeEvent
      expect(created.address()).to.equal(null)
      const refused = net.connect(port, '127.0.0.1')
      const [err] = await once(refused, 'error') as [NodeJS.ErrnoException]
      expect(err.code).to.equal('ECONNREFUSED')
    })

    it('close() right after listen(), while the key is still being generated, never starts listening', async () => {
      const created = server({})
      created.listen(0, '127.0.0.1')
      const err = await new Promise<Error | undefined>((resolve) => created.close(resolve))
      expect(err).to.equal(undefined)
      await created.keyPair()
      await settle(5)
      expect(created.server.listening).to.equal(false)
      expect(created.address()).to.equal(null)
    })
  })

  describe('channels', function () {
    it('emits \'channel\' (and calls onChannel) with the channel and the peer once the handshake is done', async () => {
      const fromCallback: PeerInfo[] = []
      const { server: created, port } = await listening({ keyPair: serverKeys, handler: (m) => m }, (_channel, peer) => fromCallback.push(peer))
      const event = once(created, 'channel') as Promise<[Channel, PeerInfo]>
      const channel = client(port)
      expect(String(await channel.request('hello'))).to.equal('hello')
      const [serverSide, peer] = await event
      expect(serverSide).to.be.an.instanceof(Channel)
      expect(serverSide.handshake.role).to.equal('server')
      expect(peer.role).to.equal('server')
      expect(peer.fingerprint).to.equal(clientKeys.publicKey.fingerprint)
      expect(peer.publicKey.equals(clientKeys.publicKey)).to.equal(true)
      expect(fromCallback.map((p) => p.fingerprint)).to.deep.equal([clientKeys.publicKey.fingerprint])
      expect(created.connections).to.equal(1)
      expect(channel.remoteFingerprint).to.equal(serverKeys.publicKey.fingerprint)
    })

    it('serves many clients at once, each with its own key', async () => {
      const { server: created, port } = await listening({ keyPair: serverKeys, handler: (m, channel) => `${channel.remoteFingerprint!}:${m.toString()}` })
      const keys = [clientKeys, otherKeys, clientKeys]
      const replies = await Promise.all(keys.map((keyPair, i) => client(port, keyPair).request(String(i))))
      expect(replies.map(String)).to.deep.equal(keys.map((k, i) => `${k.publicKey.fingerprint}:${i}`))
      expect(created.connections).to.equal(3)
    })

    it('with a handler, answers a client that ends right after its requests, then closes the channel', async () => {
      const { server: created, port } = await listening({ keyPair: serverKeys, handler: async (m) => { await delay(10); return m } })
      const channel = client(port)
      const got: string[] = []
      channel.on('data', (m: Buffer) => got.push(m.toString()))
      for (const m of ['a', 'b', 'c']) channel.write(m)
      channel.end()
      await once(channel, 'close')
      expect(got).to.deep.equal(['a', 'b', 'c'])
      await settle(5)
      expect(created.connections).to.equal(0)
    })

    // close() drains since issue 13 (test/server-drain.test.ts); destroy() is what closes at once.
    it('destroy() closes open channels, those still in their handshake too, at once', async () => {
      const { server: created, port } = await listening({ keyPair: serverKeys, handler: () => new Promise<undefined>(() => {}) })
      const done = client(port)
      const pending = done.request('never answered')
      await once(created, 'channel')
      // One that connected and said nothing: its handshake would only time out in 10 s.
      const silent = rawClient(port)
      await once(silent.socket, 'connect')
      await delay(20)
      expect(created.connections).to.equal(2)
      const serverClosed = once(created, 'close')
      created.destroy()
      await within(1000, serverClosed, 'server.destroy()')
      await expectP2snError(pending, 'ERR_P2SN_CLOSED')
      expect(await silent.next()).to.equal(null)
      expect(created.connections).to.equal(0)
    })
  })

  describe('keys', function () {
    it('generates a fresh 2048-bit key pair when keyPair is left out, a new one per server', async () => {
      const { server: first, port } = await listening({ handler: (m) => m })
      const { server: second } = await listening({ handler: (m) => m })
      const [a, b] = await Promise.all([first.keyPair(), second.keyPair()])
      expect(a.privateKey.bits).to.equal(2048)
      expect(b.privateKey.bits).to.equal(2048)
      expect(a.publicKey.equals(b.publicKey)).to.equal(false)
      const channel = client(port)
      expect(String(await channel.request('fresh'))).to.equal('fresh')
      expect(channel.remotePublicKey!.equals(a.publicKey)).to.equal(true)
    })

    const forms: Array<[string, () => ServerOptions['keyPair']]> = [
      ['a PKCS#1 PEM string', () => serverKeys.privateKey.toPem()],
      ['a PKCS#8 PEM string', () => serverKeys.privateKey.keyObject.export({ type: 'pkcs8', format: 'pem' }) as string],
      ['PEM bytes', () => Buffer.from(serverKeys.privateKey.toPem())],
      ['a private key', () => serverKeys.privateKey],
      ['a Promise of a key pair', () => Promise.resolve(serverKeys)]
    ]
    for (const [name, keyPair] of forms) {
      it(`takes keyPair as ${name}`, async () => {
        const { server: created, port } = await listening({ keyPair: keyPair(), handler: (m) => m })
        expect((await created.keyPair()).publicKey.equals(serverKeys.publicKey)).to.equal(true)
        const channel = client(port)
        expect(String(await channel.request('pem'))).to.equal('pem')
        expect(channel.remoteFingerprint).to.equal(serverKeys.publicKey.fingerprint)
      })
    }

    it('throws ERR_P2SN_BAD_KEY for a keyPair that is not a key', async () => {
      await expectP2snError(() => createServer({ keyPair: 'not a key' }), 'ERR_P2SN_BAD_KEY')
    })

    it('emits \'error\' from listen() when a keyPair promise rejects', async () => {
      const created = server({ keyPair: Promise.reject(new P2snError('ERR_P2SN_BAD_KEY', 'no key')) })
      created.listen(0, '127.0.0.1')
      const [err] = await once(created, 'error') as [P2snError]
      expect(err.code).to.equal('ERR_P2SN_BAD_KEY')
      expect(created.server.listening).to.equal(false)
    })
  })

  describe('refused and failed clients: \'clientError\', and the server goes on', function () {
    /** A listening echo server and every 'clientError' it emits. */
    async function watched (options: ServerOptions = {}): Promise<{ server: Server, port: number, clientErrors: Array<[P2snError, Channel | undefined]>, nextError: () => Promise<P2snError> }> {
      const { server: created, port } = await listening({ keyPair: serverKeys, handler: (m) => m, ...options })
      const clientErrors: Array<[P2snError, Channel | undefined]> = []
      created.on('clientError', (err: P2snError, channel?: Channel) => { clientErrors.push([err, channel]) })
      const nextError = async (): Promise<P2snError> => {
        const [err] = await once(created, 'clientError') as [P2snError]
        return err
      }
      return { server: created, port, clientErrors, nextError }
    }

    /** The server still serves a well-behaved client. */
    async function stillServes (port: number, options: Partial<Parameters<typeof connect>[0]> = {}): Promise<void> {
      expect(String(await client(port, clientKeys, options).request('still here'))).to.equal('still here')
    }

    it('a client whose key check was encrypted to another key gets P2SN:ERRORKEY and is closed: ERR_P2SN_BAD_KEYCHECK', async () => {
      const { port, clientErrors, nextError } = await watched()
      const raw = rawClient(port)
      const failed = nextError()
      raw.send('P2SN:PUBKEY')
      const serverKey = parsePublicKey(decodeBase64((await raw.next())!))
      expect(serverKey.equals(serverKeys.publicKey)).to.equal(true)
      raw.send(encodeBase64(encryptMessage(otherKeys.publicKey, 'P2SN:KEYCHECK')))
      expect(String(await raw.next())).to.equal('P2SN:ERRORKEY')
      expect(await raw.next()).to.equal(null)
      const err = await failed
      expect(err).to.be.an.instanceof(P2snError)
      expect(err.code).to.equal('ERR_P2SN_BAD_KEYCHECK')
      expect(clientErrors[0]![1]).to.be.an.instanceof(Channel)
      await stillServes(port)
      expect(clientErrors).to.have.length(1)
    })

    it('sends its key as raw PEM with serverKeyEncoding \'pem\', as the reference does', async () => {
      const { port } = await watched({ serverKeyEncoding: 'pem' })
      const raw = rawClient(port)
      raw.send('P2SN:PUBKEY')
      expect(String(await raw.next())).to.equal(serverKeys.publicKey.toPem())
      await stillServes(port)
    })

    it('a client refused by verifyPeer: ERR_P2SN_PEER_REJECTED at the server, its requests fail', async () => {
      const { port, nextError } = await watched({ verifyPeer: (peer) => peer.fingerprint === clientKeys.publicKey.fingerprint })
      const failed = nextError()
      const refused = client(port, otherKeys)
      const clientSide = once(refused, 'error') as Promise<[P2snError]>
      await expectP2snError(refused.request('let me in'), 'ERR_P2SN_CLOSED')
      expect((await clientSide)[0].code).to.equal('ERR_P2SN_CLOSED')
      expect((await failed).code).to.equal('ERR_P2SN_PEER_REJECTED')
      await stillServes(port)
    })

    it('a client that pins another key refuses the server: ERR_P2SN_PEER_REJECTED at the client', async () => {
      const { port, nextError } = await watched()
      const failed = nextError()
      const pinned = client(port, clientKeys, { verifyPeer: (peer) => peer.fingerprint === otherKeys.publicKey.fingerprint })
      await expectP2snError(pinned.request('hello'), 'ERR_P2SN_PEER_REJECTED')
      expect((await failed).code).to.equal('ERR_P2SN_CLOSED')
      await stillServes(port)
    })

    it('a client that does not speak P2SN: ERR_P2SN_PROTOCOL, and the connection is closed', async () => {
      const { port, nextError } = await watched()
      const raw = rawClient(port)
      const failed = nextError()
      raw.send('GET / HTTP/1.1')
      expect(await raw.next()).to.equal(null)
      expect((await failed).code).to.equal('ERR_P2SN_PROTOCOL')
      await stillServes(port)
    })

    it('a client that sends a huge first frame: ERR_P2SN_FRAME_TOO_LONG before it is all read', async () => {
      const { port, nextError } = await watched()
      const raw = rawClient(port)
      const failed = nextError()
      raw.socket.write(Buffer.alloc(64 * 1024, 'A'))
      expect((await failed).code).to.equal('ERR_P2SN_FRAME_TOO_LONG')
      expect(await raw.next()).to.equal(null)
      await stillServes(port)
    })

    it('a client that breaks the protocol after the handshake: the error with its code and the channel', async () => {
      const { port, clientErrors, nextError } = await watched()
      const socket = track(net.connect(port, '127.0.0.1'))
      socket.on('error', () => {})
      const framed = new Pumpify.obj(new FrameJoiner(), socket, new FrameSplitter())
      const raw = track(new HandshakeDuplex(framed as unknown as FrameTransport, { role: 'client', keyPair: clientKeys }))
      raw.resume()
      await once(raw, 'handshake')
      const failed = nextError()
      // As the standard says, the server answers P2SN:ERRORKEY in plain before it hangs up.
      const refusedByServer = new Promise<P2snError>((resolve) => raw.once('error', resolve))
      raw.write(Buffer.from('not base64!'))
      const err = await failed
      expect(err.code).to.equal('ERR_P2SN_BAD_BASE64')
      const channel = clientErrors[0]![1]!
      expect(channel).to.be.an.instanceof(Channel)
      if (!channel.destroyed) await once(channel, 'close')
      expect((await refusedByServer).code).to.equal('ERR_P2SN_ERRORKEY')
      await stillServes(port)
      expect(clientErrors).to.have.length(1)
    })

    it('a TLS server: a client that does not speak TLS gets ERR_P2SN_CONNECTION and is closed', async () => {
      const tls = { key: TLS_KEY, cert: TLS_CERT }
      const { port, nextError } = await watched({ tls })
      const raw = rawClient(port)
      const failed = nextError()
      raw.send('P2SN:PUBKEY')
      expect((await failed).code).to.equal('ERR_P2SN_CONNECTION')
      expect(await within(1000, raw.next(), 'closing the connection')).to.equal(null)
      await stillServes(port, { tls: { ca: TLS_CERT, servername: 'localhost' } })
    })

    it('a TLS client that hangs up during the TLS handshake does not keep server.close() waiting', async () => {
      const { server: created, port } = await watched({ tls: { key: TLS_KEY, cert: TLS_CERT } })
      // It does not trust the certificate, so it hangs up after the server's part of the handshake.
      const distrustful = client(port, clientKeys, { tls: { servername: 'localhost' } })
      await expectP2snError(distrustful.request('hello'), 'ERR_P2SN_CONNECTION')
      await within(1000, new Promise((resolve) => created.close(resolve)), 'server.close()')
    })

    it('does not crash without a \'clientError\' listener', async () => {
      const { port } = await listening({ keyPair: serverKeys, handler: (m) => m })
      const raw = rawClient(port)
      raw.send('nonsense')
      expect(await raw.next()).to.equal(null)
      expect(String(await client(port).request(randomBytes(8).toString('hex'))).length).to.equal(16)
    })
  })

  describe('afterwards', function () {
    it('leaves no sockets, servers or other handles open', async () => {
      await expectNoLeakedResources(baseline)
    })
  })
})
