/**
 * A server with `proxyProtocol` (issue 13) behind a relay that plays the load balancer: it
 * prepends a PROXY protocol header (v1 or v2) to each connection's stream, as HAProxy's
 * `send-proxy` / `send-proxy-v2` does. The client's address comes from the header; a connection
 * without a valid header is refused, as the header arrives whole, cut up or together with the
 * first P2SN frame. The decoder's own limits are tested in proxy-protocol.test.ts.
 */
import { once } from 'node:events'
import net from 'node:net'
import { expect } from 'chai'
import { connect, createServer, generateKeyPair, type Channel, type KeyPair, type PeerInfo, type Server, type ServerOptions } from '../lib/index.js'
import { expectP2snError } from './helpers/errors.js'
import { listenLocal, relayTo } from './helpers/net.js'
import { useLoopbackFixture } from './helpers/loopback.js'

const sleep = async (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** A v1 header for a client at 203.0.113.7:40000. */
const V1 = Buffer.from('PROXY TCP4 203.0.113.7 192.0.2.1 40000 7000\r\n', 'latin1')

/** A v2 PROXY header for a client at [2001:db8::7]:40001, with one TLV (a unique id). */
function v2 (command: 'PROXY' | 'LOCAL' = 'PROXY'): Buffer {
  const addresses = Buffer.alloc(36)
  Buffer.from('20010db8000000000000000000000007', 'hex').copy(addresses, 0)
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(addresses, 16)
  addresses.writeUInt16BE(40001, 32)
  addresses.writeUInt16BE(7000, 34)
  const tlv = Buffer.from([0x05, 0x00, 0x04, 0x61, 0x62, 0x63, 0x64])
  const fixed = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1')
  const head = Buffer.alloc(4)
  head[0] = command === 'PROXY' ? 0x21 : 0x20
  head[1] = 0x21
  head.writeUInt16BE(addresses.length + tlv.length, 2)
  return Buffer.concat([fixed, head, addresses, tlv])
}

describe('Server with proxyProtocol', function () {
  this.timeout(20_000)
  const fixture = useLoopbackFixture()
  const { closers } = fixture

  async function start (options: ServerOptions = {}): Promise<{ server: Server, port: number, errors: Error[] }> {
    const server = createServer({ keyPair: fixture.serverKeys, handler: (message) => message, proxyProtocol: true, ...options })
    const errors: Error[] = []
    server.on('clientError', (err) => errors.push(err))
    closers.push(() => { server.destroy() })
    return { server, port: await listenLocal(server), errors }
  }

  /**
   * A load balancer in front of `port` that sends `header` first: on its own (`'apart'`), in the
   * same write as the client's first bytes (`'with first'`), or a byte at a time (`'trickled'`).
   */
  async function balancer (port: number, header: Buffer, how: 'apart' | 'with first' | 'trickled' = 'apart'): Promise<number> {
    const relay = relayTo(port, (socket, upstream) => {
      if (how === 'apart') {
        upstream.write(header)
        socket.pipe(upstream)
      } else if (how === 'with first') {
        socket.once('data', (first: Buffer) => {
          upstream.write(Buffer.concat([header, first]))
          socket.pipe(upstream)
        })
      } else {
        socket.pause()
        void (async () => {
          for (const byte of header) {
            upstream.write(Buffer.from([byte]))
            await sleep(2)
          }
          socket.pipe(upstream)
          socket.resume()
        })()
      }
    })
    closers.push(() => { relay.close() })
    return listenLocal(relay)
  }

  function client (port: number): Channel {
    const channel = connect({ host: '127.0.0.1', port, keyPair: fixture.clientKeys })
    channel.on('error', () => {})
    closers.push(() => { channel.destroy() })
    return channel
  }

  for (const how of ['apart', 'with first', 'trickled'] as const) {
    it(`a v1 header (${how}): the channel and PeerInfo give the client's address from it`, async () => {
      const { server, port } = await start()
      const serverSide = once(server, 'channel') as Promise<[Channel, PeerInfo]>
      const channel = client(await balancer(port, V1, how))
      expect((await channel.request('hello')).toString()).to.equal('hello')
      const [accepted, peer] = await serverSide
      expect(accepted.remoteAddress).to.equal('203.0.113.7')
      expect(accepted.remotePort).to.equal(40000)
      expect(peer.remoteAddress).to.equal('203.0.113.7')
      expect(peer.remotePort).to.equal(40000)
    })
  }

  it('a v2 header with a TLV, in the same write as the first frame', async () => {
    const { server, port } = await start()
    const serverSide = once(server, 'channel') as Promise<[Channel, PeerInfo]>
    const channel = client(await balancer(port, v2(), 'with first'))
    expect((await channel.request('hello')).toString()).to.equal('hello')
    const [, peer] = await serverSide
    expect(peer.remoteAddress).to.equal('2001:db8::7')
    expect(peer.remotePort).to.equal(40001)
  })

  it('a v2 LOCAL header (the proxy\'s own check): the socket\'s address applies', async () => {
    const { server, port } = await start()
    const serverSide = once(server, 'channel') as Promise<[Channel, PeerInfo]>
    const channel = client(await balancer(port, v2('LOCAL')))
    await channel.request('hello')
    const [accepted] = await serverSide
    expect(accepted.remoteAddress).to.equal('127.0.0.1')
  })

  it('a client that connects straight, without a header, is refused with ERR_P2SN_PROXY_PROTOCOL', async () => {
    const { port, errors } = await start()
    const channel = client(port)
    await expectP2snError(channel.request('hello'), 'ERR_P2SN_CLOSED')
    await sleep(50)
    expect(errors.map((err) => (err as { code?: string }).code)).to.deep.equal(['ERR_P2SN_PROXY_PROTOCOL'])
  })

  for (const [label, bytes] of [
    ['a v1 header with a bad address', Buffer.from('PROXY TCP4 203.0.113.999 192.0.2.1 40000 7000\r\n', 'latin1')],
    ['a v2 header whose length is past the limit', Buffer.concat([Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1'), Buffer.from([0x21, 0x11, 0x07, 0xd0])])],
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\n\r\n', 'latin1')]
  ] as const) {
    it(`${label} is refused at once`, async () => {
      const { port, errors } = await start()
      const socket = net.connect({ port, host: '127.0.0.1' })
      socket.on('error', () => {})
      await once(socket, 'connect')
      const started = Date.now()
      socket.write(bytes)
      await once(socket, 'close')
      expect(Date.now() - started).to.be.below(1000)
      expect(errors.map((err) => (err as { code?: string }).code)).to.deep.equal(['ERR_P2SN_PROXY_PROTOCOL'])
    })
  }

  it('a header that never completes is refused after handshakeTimeout', async () => {
    const { port, errors } = await start({ handshakeTimeout: 300 })
    const socket = net.connect({ port, host: '127.0.0.1' })
    socket.on('error', () => {})
    await once(socket, 'connect')
    socket.write('PROXY TCP4 203.0.')
    const started = Date.now()
    await once(socket, 'close')
    expect(Date.now() - started).to.be.within(200, 3000)
    expect(errors.map((err) => (err as { code?: string }).code)).to.deep.equal(['ERR_P2SN_PROXY_PROTOCOL'])
  })

  it('the header and the handshake share one handshakeTimeout', async () => {
    const { port, errors } = await start({ handshakeTimeout: 600 })
    const socket = net.connect({ port, host: '127.0.0.1' })
    socket.on('error', () => {})
    await once(socket, 'connect')
    const started = Date.now()
    await sleep(400)
    socket.write(V1)
    await once(socket, 'close')
    // 600 ms in all, not 400 + 600.
    expect(Date.now() - started).to.be.within(500, 900)
    expect(errors.map((err) => (err as { code?: string }).code)).to.deep.equal(['ERR_P2SN_HANDSHAKE_TIMEOUT'])
  })

  it('a probe that connects and leaves without a byte is no clientError', async () => {
    const { port, errors } = await start()
    const socket = net.connect({ port, host: '127.0.0.1' })
    await once(socket, 'connect')
    socket.end()
    await once(socket, 'close')
    await sleep(100)
    expect(errors).to.deep.equal([])
  })

  it('a header sent to a server without the option fails its handshake, as before', async () => {
    const server = createServer({ keyPair: fixture.serverKeys, handler: (message) => message })
    const errors: Error[] = []
    server.on('clientError', (err) => errors.push(err))
    closers.push(() => { server.destroy() })
    const port = await listenLocal(server)
    const channel = client(await balancer(port, V1))
    await expectP2snError(channel.request('hello'), 'ERR_P2SN_CLOSED')
    await sleep(50)
    expect(errors).to.have.length(1)
    expect((errors[0] as { code?: string }).code).to.not.equal('ERR_P2SN_PROXY_PROTOCOL')
  })

  it('connections still sending their header count against maxPendingHandshakes', async () => {
    const { server, port, errors } = await start({ maxPendingHandshakes: 2 })
    const sockets = await Promise.all([0, 1, 2].map(async () => {
      const socket = net.connect({ port, host: '127.0.0.1' })
      socket.on('error', () => {})
      await once(socket, 'connect')
      socket.write('PROXY ')
      closers.push(() => { socket.destroy() })
      return socket
    }))
    await sleep(100)
    expect(server.connections).to.equal(2)
    expect(errors.map((err) => (err as { code?: string }).code)).to.deep.equal(['ERR_P2SN_SERVER_BUSY'])
    expect(sockets[0]!.destroyed || sockets[0]!.readableEnded).to.equal(true)
  })

  it('proxyProtocol with plain tls (the header would come before TLS) is refused', function () {
    expect(() => createServer({ keyPair: fixture.serverKeys, proxyProtocol: true, tls: { key: 'x', cert: 'y' } })).to.throw().with.property('code', 'ERR_P2SN_INVALID_ARGUMENT')
  })

  describe('with authenticate: the header, then TLS from the bytes after it', () => {
    // 2048-bit keys: OpenSSL 3.5 (Node 22 and up) takes no TLS certificate of a 1024-bit key.
    let serverKeys: KeyPair
    let clientKeys: KeyPair
    before(async () => {
      [serverKeys, clientKeys] = await Promise.all([generateKeyPair(), generateKeyPair()])
    })

    function authenticatedClient (port: number): Channel {
      const channel = connect({ host: '127.0.0.1', port, keyPair: clientKeys, authenticate: true })
      channel.on('error', () => {})
      closers.push(() => { channel.destroy() })
      return channel
    }

    // 'with first' puts the TLS ClientHello in the header's chunk: those bytes sit in the socket
    // when TLS takes it, and must reach TLS, not be dropped.
    for (const how of ['apart', 'with first', 'trickled'] as const) {
      it(`a v1 header (${how}): TLS proves the client's key, and the address comes from the header`, async () => {
        const { server, port, errors } = await start({ keyPair: serverKeys, authenticate: true })
        const serverSide = once(server, 'channel') as Promise<[Channel, PeerInfo]>
        const channel = authenticatedClient(await balancer(port, V1, how))
        expect((await channel.request('hello')).toString()).to.equal('hello')
        const [accepted, peer] = await serverSide
        expect(peer.authenticated).to.equal(true)
        expect(peer.fingerprint).to.equal(clientKeys.publicKey.fingerprint)
        expect(accepted.remoteAddress).to.equal('203.0.113.7')
        expect(peer.remotePort).to.equal(40000)
        expect(errors).to.deep.equal([])
      })
    }

    it('a v2 header in the same write as the ClientHello', async () => {
      const { server, port } = await start({ keyPair: serverKeys, authenticate: true })
      const serverSide = once(server, 'channel') as Promise<[Channel, PeerInfo]>
      const channel = authenticatedClient(await balancer(port, v2(), 'with first'))
      expect((await channel.request('hello')).toString()).to.equal('hello')
      const [, peer] = await serverSide
      expect(peer.authenticated).to.equal(true)
      expect(peer.remoteAddress).to.equal('2001:db8::7')
    })

    it('a client that connects straight, without a header, is refused with ERR_P2SN_PROXY_PROTOCOL', async () => {
      const { port, errors } = await start({ keyPair: serverKeys, authenticate: true })
      const channel = authenticatedClient(port)
      await expectP2snError(channel.request('hello'), 'ERR_P2SN_AUTHENTICATION')
      await sleep(50)
      expect(errors.map((err) => (err as { code?: string }).code)).to.deep.equal(['ERR_P2SN_PROXY_PROTOCOL'])
    })
  })
})
