// The authenticated mode (issue 10): P2SN inside mutual TLS 1.3, certificates made from the P2SN
// keys, and each side holding the other to the key it proved.
import crypto from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'
import { expect } from 'chai'
import {
  P2snError, connect, createServer, generateKeyPair, selfSignedCertificate, wrap,
  type Channel, type KeyPair, type PeerInfo, type Server, type ServerOptions
} from '../lib/index.js'
import { makeCa } from './helpers/certificates.js'
import { duplexPair } from './helpers/duplex-pair.js'
import { expectP2snError, expectP2snErrorSync, nextError } from './helpers/errors.js'
import { ScriptedPeer } from './helpers/frame-pair.js'
import { listenLocal, relayTo } from './helpers/net.js'
import { closing, delay, until, within } from './helpers/timing.js'
import { acceptTlsAs, dialTls } from './helpers/tls.js'

/** How long "at once" may take: far below any timeout (the handshake's is 10 s by default). */
const AT_ONCE = 3000

/**
 * Each test's time limit; also that of the waits that had no limit of their own, so that they
 * are no stricter than before, yet stop polling when a test fails.
 */
const TEST_TIMEOUT = 30_000

describe('the authenticated mode', function () {
  this.timeout(TEST_TIMEOUT)
  let serverKeys: KeyPair
  let clientKeys: KeyPair
  let otherKeys: KeyPair
  const servers: Array<Server | net.Server> = []
  const handled: string[] = []

  before(async () => {
    [serverKeys, clientKeys, otherKeys] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()])
  })

  afterEach(async () => {
    handled.length = 0
    await Promise.all(servers.splice(0).map(async (server) => { await new Promise((resolve) => server.close(resolve)) }))
  })

  /** A server that records every request it handles; its client errors are collected. */
  async function serve (options: ServerOptions = {}): Promise<{ port: number, errors: P2snError[], peers: PeerInfo[], server: Server }> {
    const errors: P2snError[] = []
    const peers: PeerInfo[] = []
    const server = createServer({
      keyPair: serverKeys,
      authenticate: true,
      handler: (message) => {
        handled.push(message.toString())
        return `you said ${message.toString()}`
      },
      ...options
    })
    server.on('clientError', (err: Error) => {
      expect(err, String(err)).to.be.instanceOf(P2snError)
      errors.push(err as P2snError)
    })
    server.on('channel', (_channel: Channel, peer: PeerInfo) => { peers.push(peer) })
    servers.push(server)
    return { port: await listenLocal(server), errors, peers, server }
  }

  describe('certificates', () => {
    it('are self-signed X.509 certificates of the P2SN key, made once per key, without expiry', () => {
      const pem = selfSignedCertificate(serverKeys)
      const cert = new crypto.X509Certificate(pem)
      expect(cert.publicKey.equals(serverKeys.publicKey.keyObject)).to.equal(true)
      expect(cert.verify(cert.publicKey)).to.equal(true)
      expect(cert.subject.replaceAll('\\', '')).to.equal(`CN=p2sn ${serverKeys.publicKey.fingerprint}`)
      expect(cert.issuer).to.equal(cert.subject)
      expect(new Date(cert.validTo).getUTCFullYear()).to.equal(9999)
      expect(selfSignedCertificate({ ...serverKeys })).to.equal(pem)
    })
  })

  describe('between two peers of the mode', () => {
    it('proves each side\'s key to the other: authenticated is true, the fingerprints are the keys\' own', async () => {
      const { port, peers } = await serve()
      const channel = connect({ port, keyPair: clientKeys, authenticate: true })
      const [peer] = await once(channel, 'handshake') as [PeerInfo]
      expect(peer).to.include({ authenticated: true, fingerprint: serverKeys.publicKey.fingerprint, role: 'client' })
      expect((await channel.request('hello')).toString()).to.equal('you said hello')
      expect(peers).to.have.length(1)
      expect(peers[0]).to.include({ authenticated: true, fingerprint: clientKeys.publicKey.fingerprint, role: 'server' })
      channel.end()
      await once(channel, 'close')
    })

    it('runs over TLS 1.3, the client presenting a certificate of its P2SN key', async () => {
      // The server's TLS by hand, to look at what the client presents.
      const seen = new Promise<tls.TLSSocket>((resolve) => {
        const raw = net.createServer((socket) => {
          const tlsSocket = acceptTlsAs(socket, serverKeys)
          tlsSocket.once('secure', () => { resolve(tlsSocket) })
          wrap(tlsSocket, { role: 'server', keyPair: serverKeys }).on('error', () => {})
        })
        servers.push(raw)
        void listenLocal(raw).then((port) => {
          const channel = connect({ port, keyPair: clientKeys, authenticate: true })
          channel.on('error', () => {})
          channel.once('handshake', () => { channel.destroy() })
        })
      })
      const tlsSocket = await seen
      expect(tlsSocket.getProtocol()).to.equal('TLSv1.3')
      expect(tlsSocket.getPeerX509Certificate()?.publicKey.equals(clientKeys.publicKey.keyObject)).to.equal(true)
    })

    it('runs over TLS 1.3, the server presenting a certificate of its P2SN key', async () => {
      const { port } = await serve()
      // The client's TLS by hand, to look at what the server presents.
      const tlsSocket = dialTls(port, clientKeys)
      await once(tlsSocket, 'secureConnect')
      expect(tlsSocket.getProtocol()).to.equal('TLSv1.3')
      expect(tlsSocket.getPeerX509Certificate()?.publicKey.equals(serverKeys.publicKey.keyObject)).to.equal(true)
      const channel = wrap(tlsSocket, { role: 'client', keyPair: clientKeys })
      expect((await channel.request('by hand')).toString()).to.equal('you said by hand')
      channel.destroy()
    })

    it('half-closes: a client that ends after its request still gets the reply', async () => {
      const { port, errors } = await serve({ handler: async (m) => { await delay(50); return m } })
      const channel = connect({ port, keyPair: clientKeys, authenticate: true })
      const got: string[] = []
      channel.on('data', (m: Buffer) => got.push(m.toString()))
      channel.write('late')
      channel.end()
      await once(channel, 'close')
      expect(got).to.deep.equal(['late'])
      // Each side said P2SN:END before its end: neither took the other's end for a cut.
      expect(errors).to.deep.equal([])
    })

    it('a stream cut short on the way fails with ERR_P2SN_TRUNCATED, not a clean end', async () => {
      const { port: serverPort, errors } = await serve()
      // A relay that, once told, forwards nothing more from the client and ends its side (a FIN
      // with no TLS close_notify before it), as an attacker on the path can.
      let cut = false
      const relay = relayTo(serverPort, (socket, upstream) => {
        socket.on('data', (chunk: Buffer) => {
          if (cut) upstream.end()
          else upstream.write(chunk)
        })
      })
      servers.push(relay)
      const channel = connect({ port: await listenLocal(relay), keyPair: clientKeys, authenticate: true })
      channel.on('error', () => {})
      expect((await channel.request('part 1 of 2')).toString()).to.equal('you said part 1 of 2')
      cut = true
      channel.write('part 2 of 2')
      channel.end()
      await until(() => errors.length > 0, AT_ONCE, 'the server\'s error')
      expect(errors[0]!.code).to.equal('ERR_P2SN_TRUNCATED')
      expect(handled).to.deep.equal(['part 1 of 2'])
      channel.destroy()
    })

    it('works over any duplex with wrap(), and generates the key when none is given', async () => {
      const [a, b] = duplexPair({ chunking: 'random' })
      const server = wrap(a, { role: 'server', keyPair: serverKeys, authenticate: true })
      const client = wrap(b, { role: 'client', authenticate: true })
      server.on('data', (m: Buffer) => { server.write(Buffer.concat([Buffer.from('echo '), m])) })
      const [[clientSees], [serverSees]] = await Promise.all([once(client, 'handshake'), once(server, 'handshake')]) as [[PeerInfo], [PeerInfo]]
      expect(clientSees).to.include({ authenticated: true, fingerprint: serverKeys.publicKey.fingerprint })
      expect(serverSees.authenticated).to.equal(true)
      expect(serverSees.fingerprint).to.equal(client.handshake.keyPair?.publicKey.fingerprint)
      expect((await client.request('over a pair')).toString()).to.equal('echo over a pair')
      client.destroy()
      server.destroy()
    })

    it('lets verifyPeer decide on the proven key, as the plain mode does on the claimed one', async () => {
      const { port, errors } = await serve({ verifyPeer: (peer) => peer.fingerprint === otherKeys.publicKey.fingerprint })
      const channel = connect({ port, keyPair: clientKeys, authenticate: true })
      // The refused side is told nothing but that the connection closed (README, error codes).
      const refused = expectP2snError(nextError(channel), 'ERR_P2SN_CLOSED')
      await until(() => errors.length > 0, TEST_TIMEOUT, 'the server\'s refusal')
      expect(errors[0]!.code).to.equal('ERR_P2SN_PEER_REJECTED')
      await within(AT_ONCE, refused, 'the client\'s failure')
      expect(handled).to.deep.equal([])
      channel.destroy()
    })
  })

  describe('plain peers fail at once, with a clear error', () => {
    it('a plain client of an authenticated server', async () => {
      const { port, errors } = await serve()
      const channel = connect({ port, keyPair: clientKeys })
      const err = await within(AT_ONCE, expectP2snError(nextError(channel), 'ERR_P2SN_CLOSED'), 'the plain client\'s failure')
      expect(err.message).to.include('authenticated mode')
      await until(() => errors.length > 0, TEST_TIMEOUT, 'the server\'s failure')
      const serverErr = errors[0]!
      expect(serverErr.code).to.equal('ERR_P2SN_AUTHENTICATION')
      expect(serverErr.message).to.match(/tls 1\.3 handshake with the client failed/)
    })

    it('an authenticated client of a plain server', async () => {
      const { port, errors } = await serve({ authenticate: false })
      const channel = connect({ port, keyPair: clientKeys, authenticate: true })
      const err = await within(AT_ONCE, expectP2snError(nextError(channel), 'ERR_P2SN_AUTHENTICATION'), 'the client\'s failure')
      expect(err.message).to.include('does not run the authenticated mode')
      await until(() => errors.length > 0, TEST_TIMEOUT, 'the server\'s failure')
      const serverErr = errors[0]!
      expect(serverErr.code).to.equal('ERR_P2SN_PROTOCOL')
      expect(serverErr.message).to.include('tls handshake instead of P2SN:PUBKEY')
    })

    it('an authenticated client of a server that behaves as the Python reference (P2SN:ERRORKEY for an unreadable first frame)', async () => {
      const raw = net.createServer((socket) => {
        socket.once('data', () => { socket.end('P2SN:ERRORKEY\x04') })
        socket.on('error', () => {})
      })
      servers.push(raw)
      const channel = connect({ port: await listenLocal(raw), keyPair: clientKeys, authenticate: true })
      await within(AT_ONCE, expectP2snError(nextError(channel), 'ERR_P2SN_AUTHENTICATION'), 'the client\'s failure')
    })

    it('a client that offers TLS 1.2 at most is refused: TLS 1.3 is required', async () => {
      const { port, errors } = await serve()
      const socket = tls.connect({ port, host: '127.0.0.1', key: clientKeys.privateKey.toPem(), cert: selfSignedCertificate(clientKeys), maxVersion: 'TLSv1.2', rejectUnauthorized: false })
      socket.on('error', () => {})
      await until(() => errors.length > 0, AT_ONCE, 'the server\'s refusal')
      expect(errors[0]!.code).to.equal('ERR_P2SN_AUTHENTICATION')
      expect(handled).to.deep.equal([])
      socket.destroy()
    })

    it('a client that speaks TLS without a certificate proves no key', async () => {
      const { port, errors } = await serve()
      const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false })
      socket.on('error', () => {})
      const closed = closing(socket)
      await until(() => errors.length > 0, TEST_TIMEOUT, 'the server\'s refusal')
      const err = errors[0]!
      expect(err.code).to.equal('ERR_P2SN_AUTHENTICATION')
      expect(err.message).to.include('presented no tls certificate')
      await within(AT_ONCE, closed, 'the server closing the connection')
    })
  })

  describe('a peer whose TLS key is not its P2SN key', () => {
    it('is refused by the server with ERR_P2SN_KEY_MISMATCH, before any request is handled', async () => {
      const { port, errors } = await serve()
      // TLS under its own key, then the P2SN handshake under another: what an impostor would do.
      const socket = dialTls(port, otherKeys)
      const channel = wrap(socket, { role: 'client', keyPair: clientKeys })
      channel.on('error', () => {})
      const closed = closing(channel)
      channel.write('let me in')
      await until(() => errors.length > 0, TEST_TIMEOUT, 'the server\'s refusal')
      const err = errors[0]!
      expect(err.code).to.equal('ERR_P2SN_KEY_MISMATCH')
      expect(err.message).to.include(clientKeys.publicKey.fingerprint)
      await closed
      expect(handled).to.deep.equal([])
    })

    it('is refused by the client with ERR_P2SN_KEY_MISMATCH, before any request goes out', async () => {
      const received: Buffer[] = []
      const raw = net.createServer((socket) => {
        const tlsSocket = acceptTlsAs(socket, otherKeys)
        const channel = wrap(tlsSocket, { role: 'server', keyPair: serverKeys })
        channel.on('data', (m: Buffer) => received.push(m))
        channel.on('error', () => {})
      })
      servers.push(raw)
      const channel = connect({ port: await listenLocal(raw), keyPair: clientKeys, authenticate: true })
      channel.write('secret')
      const err = await expectP2snError(nextError(channel), 'ERR_P2SN_KEY_MISMATCH')
      expect(err.message).to.include(serverKeys.publicKey.fingerprint)
      expect(received).to.deep.equal([])
    })
  })

  describe('certificates of one\'s own, signed by a CA', () => {
    let caKeys: KeyPair
    before(async () => { caKeys = await generateKeyPair() })

    it('combine with the mode: both sides check the CA and the key', async () => {
      const ca = makeCa(caKeys)
      const { port, peers } = await serve({ tls: { cert: ca.issue(serverKeys), ca: ca.cert } })
      const channel = connect({ port, keyPair: clientKeys, authenticate: true, tls: { cert: ca.issue(clientKeys), ca: ca.cert, servername: 'localhost' } })
      const [peer] = await once(channel, 'handshake') as [PeerInfo]
      expect(peer).to.include({ authenticated: true, fingerprint: serverKeys.publicKey.fingerprint })
      expect((await channel.request('ca')).toString()).to.equal('you said ca')
      expect(peers[0]).to.include({ authenticated: true, fingerprint: clientKeys.publicKey.fingerprint })
      channel.destroy()
    })

    it('a server given a CA refuses a client whose certificate the CA did not sign', async () => {
      const ca = makeCa(caKeys)
      const { port, errors } = await serve({ tls: { cert: ca.issue(serverKeys), ca: ca.cert } })
      const channel = connect({ port, keyPair: clientKeys, authenticate: true, tls: { ca: ca.cert, servername: 'localhost' } })
      channel.on('error', () => {})
      const closed = closing(channel)
      await until(() => errors.length > 0, TEST_TIMEOUT, 'the server\'s refusal')
      expect(errors[0]!.code).to.equal('ERR_P2SN_AUTHENTICATION')
      await closed
      expect(handled).to.deep.equal([])
    })

    it('a client given a CA refuses a server whose certificate the CA did not sign, or names another host', async () => {
      const ca = makeCa(caKeys)
      const selfSigned = await serve()
      const channel = connect({ port: selfSigned.port, keyPair: clientKeys, authenticate: true, tls: { ca: ca.cert, servername: 'localhost' } })
      await expectP2snError(nextError(channel), 'ERR_P2SN_AUTHENTICATION')
      const wrongHost = await serve({ tls: { cert: ca.issue(serverKeys, 'elsewhere.example'), ca: ca.cert } })
      const other = connect({ port: wrongHost.port, keyPair: clientKeys, authenticate: true, tls: { cert: ca.issue(clientKeys), ca: ca.cert, servername: 'localhost' } })
      const err = await expectP2snError(nextError(other), 'ERR_P2SN_AUTHENTICATION')
      expect(err.message).to.match(/altnames|host/i)
    })

    it('a certificate or key of another key than the P2SN key is refused before anything opens', () => {
      const ca = makeCa(caKeys)
      expectP2snErrorSync(() => createServer({ keyPair: serverKeys, authenticate: true, tls: { cert: ca.issue(otherKeys) } }), 'ERR_P2SN_INVALID_ARGUMENT')
      expectP2snErrorSync(() => connect({ port: 1, keyPair: clientKeys, authenticate: true, tls: { key: otherKeys.privateKey.toPem() } }), 'ERR_P2SN_INVALID_ARGUMENT')
      expectP2snErrorSync(() => connect({ port: 1, keyPair: clientKeys, authenticate: true, tls: { maxVersion: 'TLSv1.2' } }), 'ERR_P2SN_INVALID_ARGUMENT')
    })

    it('a server whose generated key does not fit its certificate fails at listen', async () => {
      const ca = makeCa(caKeys)
      const server = createServer({ authenticate: true, tls: { cert: ca.issue(otherKeys) } })
      servers.push(server)
      server.listen(0, '127.0.0.1')
      const [err] = await once(server, 'error') as [P2snError]
      expect(err.code).to.equal('ERR_P2SN_INVALID_ARGUMENT')
    })
  })

  describe('options and limits', () => {
    it('refuses a non-boolean authenticate, and tls options in wrap() without it', () => {
      expectP2snErrorSync(() => connect({ port: 1, keyPair: clientKeys, authenticate: 'yes' as unknown as boolean }), 'ERR_P2SN_INVALID_ARGUMENT')
      const [a] = duplexPair()
      expectP2snErrorSync(() => wrap(a, { role: 'client', keyPair: clientKeys, tls: {} }), 'ERR_P2SN_INVALID_ARGUMENT')
      expect(a.destroyed).to.equal(true)
    })

    it('the handshake timeout covers a TLS handshake that never ends, on both sides', async () => {
      const silent = net.createServer((socket) => { socket.on('error', () => {}).resume() })
      servers.push(silent)
      const channel = connect({ port: await listenLocal(silent), keyPair: clientKeys, authenticate: true, handshakeTimeout: 300 })
      await within(AT_ONCE, expectP2snError(nextError(channel), 'ERR_P2SN_HANDSHAKE_TIMEOUT'), 'the client\'s timeout')
      const { port, errors } = await serve({ handshakeTimeout: 300 })
      const socket = net.connect(port, '127.0.0.1')
      socket.on('error', () => {})
      const closed = closing(socket)
      await until(() => errors.length > 0, AT_ONCE, 'the server\'s timeout')
      expect(errors[0]!.code).to.equal('ERR_P2SN_HANDSHAKE_TIMEOUT')
      await within(AT_ONCE, closed, 'the server closing the connection')
    })

    it('a client that hangs up during the TLS handshake is let go at once, not at the timeout', async () => {
      const { port, errors, server } = await serve()
      for (const partial of [Buffer.alloc(0), Buffer.from([0x16, 0x03, 0x01, 0x00])]) {
        const socket = net.connect(port, '127.0.0.1')
        socket.on('error', () => {})
        await once(socket, 'connect')
        socket.end(partial)
      }
      await until(() => errors.length === 2 && server.connections === 0, AT_ONCE, 'both connections let go')
      expect(errors.map((e) => e.code)).to.deep.equal(['ERR_P2SN_AUTHENTICATION', 'ERR_P2SN_AUTHENTICATION'])
    })

    // What someone on the path can do to the client's TLS records once both handshakes are done:
    // each record goes out alone (one message at a time), and the relay acts on the first it sees.
    const tamperings: Array<[string, (chunk: Buffer, forward: (c: Buffer) => void, held: Buffer[]) => void]> = [
      ['flips a bit in a record', (chunk, forward) => { chunk[chunk.length - 1]! ^= 1; forward(chunk) }],
      ['drops a record', () => {}],
      ['repeats a record', (chunk, forward) => { forward(chunk); forward(chunk) }],
      ['swaps two records', (chunk, forward, held) => { if (held.length === 0) held.push(chunk); else { forward(chunk); forward(held.pop()!) } }]
    ]
    for (const [name, tamperWith] of tamperings) {
      it(`a relay that ${name} after the handshake fails the server's channel with ERR_P2SN_CONNECTION; what was handled came whole, once, in order`, async () => {
        const { port: serverPort, errors, server } = await serve()
        let tamper = false
        let tampered = 0
        const relay = relayTo(serverPort, (socket, upstream) => {
          const forward = (chunk: Buffer): void => { upstream.write(chunk) }
          const held: Buffer[] = []
          socket.on('data', (chunk: Buffer) => {
            if (tamper && tampered++ < 2) tamperWith(chunk, forward, held)
            else forward(chunk)
          })
        })
        servers.push(relay)
        const channel = connect({ port: await listenLocal(relay), keyPair: clientKeys, authenticate: true })
        channel.on('error', () => {})
        expect((await channel.request('before')).toString()).to.equal('you said before')
        tamper = true
        const sent = ['before']
        for (let i = 0; i < 5 && errors.length === 0; i++) {
          sent.push(`message ${i}`)
          channel.write(`message ${i}`)
          await delay(30)
        }
        await until(() => errors.length > 0, AT_ONCE, 'the server\'s error')
        expect(errors[0]!.code).to.equal('ERR_P2SN_CONNECTION')
        await until(() => server.connections === 0, AT_ONCE, 'the server letting go of the connection')
        // A damaged, missing, repeated or misplaced record is never delivered, nor what follows it:
        // what was handled is what was sent, each once, in order, up to where the stream failed.
        expect(handled.length).to.be.at.most(sent.length)
        expect(handled).to.deep.equal(sent.slice(0, handled.length))
        channel.destroy()
      })
    }

    it('maxPendingHandshakes counts connections still in their TLS handshake', async () => {
      const { port, errors } = await serve({ maxPendingHandshakes: 2 })
      const sockets = [0, 1, 2].map(() => {
        const socket = net.connect(port, '127.0.0.1')
        socket.on('error', () => {})
        return socket
      })
      const oldestClosed = closing(sockets[0]!)
      await until(() => errors.length > 0, AT_ONCE, 'the oldest handshake dropped')
      expect(errors[0]!.code).to.equal('ERR_P2SN_SERVER_BUSY')
      await within(AT_ONCE, oldestClosed, 'the oldest connection closing')
      for (const socket of sockets) socket.destroy()
    })

    it('destroy() before the TLS handshake is done is quiet and closes the socket', async () => {
      const silent = net.createServer((socket) => { socket.on('error', () => {}).resume() })
      servers.push(silent)
      const port = await listenLocal(silent)
      const accepted = once(silent, 'connection') as Promise<[net.Socket]>
      const channel = connect({ port, keyPair: clientKeys, authenticate: true })
      channel.on('error', (err) => { expect.fail(`no error expected, got ${String(err)}`) })
      const [socket] = await accepted
      channel.destroy()
      await within(AT_ONCE, once(socket, 'end'), 'the socket\'s end')
    })
  })

  describe('a scripted plain peer', () => {
    it('sees a TLS ClientHello, not P2SN:PUBKEY, from an authenticated client', async () => {
      const raw = new net.Server()
      servers.push(raw)
      const first = new Promise<Buffer>((resolve) => {
        raw.on('connection', (socket) => {
          const peer = new ScriptedPeer(socket)
          socket.once('data', (chunk: Buffer) => { resolve(chunk) })
          void peer.read()
        })
      })
      const channel = connect({ port: await listenLocal(raw), keyPair: clientKeys, authenticate: true, handshakeTimeout: 500 })
      channel.on('error', () => {})
      const hello = await first
      expect(hello[0]).to.equal(0x16)
      expect(hello.includes(Buffer.from('P2SN:'))).to.equal(false)
      channel.destroy()
    })
  })
})
