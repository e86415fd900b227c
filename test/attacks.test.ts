// The protocol's known limits (SECURITY.md, issue 10), as attacks over loopback TCP: an impostor
// who holds only a public key, a man in the middle against a client that pins the server's key,
// and a replay of a recorded request. In plain P2SN each succeeds, and the test says so; in the
// authenticated mode each fails with a coded error, and nothing reaches the handler.
import { once } from 'node:events'
import net from 'node:net'
import { expect } from 'chai'
import {
  P2snError, connect, createServer, decodeBase64, decryptMessage, encodeBase64, encryptMessage, generateKeyPair, parsePublicKey,
  type Channel, type KeyPair, type PeerInfo, type PublicKey, type Server
} from '../lib/index.js'
import { expectP2snError, nextError } from './helpers/errors.js'
import { ScriptedPeer } from './helpers/frame-pair.js'
import { impersonate, nextFrame } from './helpers/impostor.js'
import { listenLocal, relayTo } from './helpers/net.js'
import { clientSession } from './helpers/session.js'
import { closing, delay, until, within } from './helpers/timing.js'
import { acceptTlsAs, dial } from './helpers/tls.js'

const KEYCHECK = 'P2SN:KEYCHECK'

/** What a server's handler saw: who the peer said it was, and what it asked. */
interface Handled {
  fingerprint: string
  authenticated: boolean
  message: string
}

describe('attacks on the protocol\'s known limits', function () {
  this.timeout(30_000)
  let alice: KeyPair
  let mallory: KeyPair
  let serverKeys: KeyPair
  const closers: Array<() => Promise<unknown>> = []
  const sockets: net.Socket[] = []

  before(async () => {
    [alice, mallory, serverKeys] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()])
  })

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy()
    await Promise.all(closers.splice(0).map(async (close) => await close()))
  })

  /** A server that answers each request with the request itself, recording who asked what. */
  async function echoServer (authenticate: boolean, onlyAlice: boolean): Promise<{ port: number, handled: Handled[], errors: P2snError[], server: Server }> {
    const handled: Handled[] = []
    const errors: P2snError[] = []
    const peers = new WeakMap<Channel, PeerInfo>()
    const server = createServer({
      keyPair: serverKeys,
      authenticate,
      verifyPeer: onlyAlice ? (peer) => peer.fingerprint === alice.publicKey.fingerprint : undefined,
      handler: (message, channel) => {
        const peer = peers.get(channel)!
        handled.push({ fingerprint: peer.fingerprint, authenticated: peer.authenticated, message: message.toString() })
        return message
      }
    })
    server.on('channel', (channel: Channel, peer: PeerInfo) => { peers.set(channel, peer) })
    server.on('clientError', (err: P2snError) => { errors.push(err) })
    closers.push(async () => await new Promise((resolve) => server.close(resolve)))
    return { port: await listenLocal(server), handled, errors, server }
  }

  describe('an impostor holding only alice\'s public key', () => {
    it('plain P2SN: is admitted as alice, and its command runs (a known limit: the handshake proves no key)', async () => {
      const { port, handled } = await echoServer(false, true)
      const peer = new ScriptedPeer(await dial(port, sockets))
      // Alice's public key is all the impostor has of her.
      await impersonate(peer, alice.publicKey, 'id > pwned')
      // The reply is encrypted to alice's key: the impostor cannot read it, but the server acted.
      await nextFrame(peer)
      expect(handled).to.deep.equal([{ fingerprint: alice.publicKey.fingerprint, authenticated: false, message: 'id > pwned' }])
    })

    it('authenticated mode: presenting alice\'s key over its own TLS certificate fails with ERR_P2SN_KEY_MISMATCH', async () => {
      const { port, handled, errors } = await echoServer(true, true)
      const peer = new ScriptedPeer(await dial(port, sockets, mallory))
      // The server hangs up on alice's key at step 5: the script never gets to send its request.
      let failure: unknown
      await impersonate(peer, alice.publicKey, 'id > pwned').catch((err: unknown) => { failure = err })
      expect(String(failure)).to.include('hung up')
      await until(() => errors.length > 0, 3000, 'the server\'s clientError')
      expect(errors.map((e) => e.code)).to.deep.equal(['ERR_P2SN_KEY_MISMATCH'])
      expect(handled).to.deep.equal([])
    })

    it('authenticated mode: presenting its own key, proven, is refused by verifyPeer (ERR_P2SN_PEER_REJECTED)', async () => {
      const { port, handled, errors } = await echoServer(true, true)
      const channel = connect({ port, keyPair: mallory, authenticate: true })
      channel.on('error', () => {})
      channel.write('id > pwned')
      await closing(channel)
      expect(errors.map((e) => e.code)).to.deep.equal(['ERR_P2SN_PEER_REJECTED'])
      expect(handled).to.deep.equal([])
    })
  })

  describe('a man in the middle against a client that pins the server\'s key', () => {
    /**
     * A relay between the client and the real server that holds only the server's public key. It
     * plays the server's handshake to the client by hand (at step 2 the server's key, step 4 a
     * plain P2SN:PUBKEY, step 6 a key check to the client's key, which anyone can make), and a
     * client's to the real server under its own key. It forwards each request frame as it is,
     * decrypts each reply, which the server encrypts to the relay's key, and re-encrypts it to
     * the client. With `tlsKeys`, it speaks TLS to the client under a certificate of that key.
     */
    async function relay (serverPort: number, tlsKeys?: KeyPair): Promise<{ port: number, read: string[], forwarded: Buffer[], failures: unknown[] }> {
      const read: string[] = []
      const forwarded: Buffer[] = []
      const failures: unknown[] = []
      const relayServer = net.createServer((socket) => {
        socket.on('error', () => {})
        const toClient = tlsKeys === undefined ? socket : acceptTlsAs(socket, tlsKeys)
        toClient.on('error', () => {})
        void (async () => {
          const client = new ScriptedPeer(toClient)
          expect((await nextFrame(client)).toString()).to.equal('P2SN:PUBKEY')
          client.send(encodeBase64(Buffer.from(serverKeys.publicKey.toPem())))
          await nextFrame(client)
          client.send('P2SN:PUBKEY')
          const clientKey: PublicKey = parsePublicKey(decodeBase64(await nextFrame(client)))
          client.send(encodeBase64(encryptMessage(clientKey, KEYCHECK)))
          const { session: upstream } = await clientSession(await dial(serverPort, sockets), mallory, { ignoreErrors: true })
          upstream.on('data', (reply: Buffer) => {
            const plaintext = decryptMessage(mallory, decodeBase64(reply))
            read.push(plaintext.toString())
            client.send(encodeBase64(encryptMessage(clientKey, plaintext)))
          })
          for (let request = await client.read(); request !== null; request = await client.read()) {
            forwarded.push(request)
            upstream.write(request)
          }
        })().catch((err: unknown) => { failures.push(err) })
      })
      closers.push(async () => await new Promise((resolve) => relayServer.close(resolve)))
      return { port: await listenLocal(relayServer), read, forwarded, failures }
    }

    const pinServer = (peer: PeerInfo): boolean => peer.fingerprint === serverKeys.publicKey.fingerprint

    it('plain P2SN: the pin holds, yet the relay reads every reply (a known limit: the server proves no key)', async () => {
      const { port: serverPort, handled } = await echoServer(false, false)
      const { port, read, forwarded } = await relay(serverPort)
      const channel = connect({ port, keyPair: alice, verifyPeer: pinServer })
      closers.push(async () => { channel.destroy() })
      const [peer] = await once(channel, 'handshake') as [PeerInfo]
      expect(peer).to.include({ fingerprint: serverKeys.publicKey.fingerprint, authenticated: false })
      expect((await channel.request('the launch code is 0000')).toString()).to.equal('the launch code is 0000')
      expect(read).to.deep.equal(['the launch code is 0000'])
      // What P2SN does keep: the request, sent to the pinned key, the relay passed on but could not read.
      expect(forwarded).to.have.length(1)
      // (A block above mallory's modulus cannot even be tried: decryptMessage refuses it.)
      const attempt = (): string => {
        try {
          return decryptMessage(mallory, decodeBase64(forwarded[0]!)).toString()
        } catch (err) {
          expect(err).to.be.an.instanceof(P2snError).with.property('code', 'ERR_P2SN_BAD_CIPHERTEXT')
          return '(refused)'
        }
      }
      expect(attempt()).not.to.equal('the launch code is 0000')
      // The server answered the relay, whom it took for the client.
      expect(handled).to.deep.equal([{ fingerprint: mallory.publicKey.fingerprint, authenticated: false, message: 'the launch code is 0000' }])
    })

    it('authenticated mode: a relay presenting the server\'s key fails the client with ERR_P2SN_KEY_MISMATCH', async () => {
      const { port: serverPort, handled } = await echoServer(true, false)
      const { port, read } = await relay(serverPort, mallory)
      const channel = connect({ port, keyPair: alice, verifyPeer: pinServer, authenticate: true })
      const request = channel.request('the launch code is 0000')
      request.catch(() => {})
      await expectP2snError(nextError(channel), 'ERR_P2SN_KEY_MISMATCH')
      await expectP2snError(request, 'ERR_P2SN_KEY_MISMATCH')
      expect(read).to.deep.equal([])
      expect(handled).to.deep.equal([])
    })

    it('authenticated mode: a relay presenting its own key is refused by the pin (ERR_P2SN_PEER_REJECTED)', async () => {
      // A relay that is honest about its key, so that TLS and P2SN agree: the pin refuses it.
      const heard: string[] = []
      const relayServer = createServer({ keyPair: mallory, authenticate: true, handler: (m) => { heard.push(m.toString()); return m } })
      closers.push(async () => await new Promise((resolve) => relayServer.close(resolve)))
      const channel = connect({ port: await listenLocal(relayServer), keyPair: alice, verifyPeer: pinServer, authenticate: true })
      const request = channel.request('the launch code is 0000')
      request.catch(() => {})
      await expectP2snError(nextError(channel), 'ERR_P2SN_PEER_REJECTED')
      await expectP2snError(request, 'ERR_P2SN_PEER_REJECTED')
      expect(heard).to.deep.equal([])
    })
  })

  describe('a passive recorder that replays a victim\'s request in a session of its own', () => {
    /** A TCP relay that forwards both ways and records what the client sent. */
    async function tap (serverPort: number): Promise<{ port: number, recorded: Buffer[] }> {
      const recorded: Buffer[] = []
      const tapServer = relayTo(serverPort, (socket, upstream) => {
        socket.on('data', (chunk: Buffer) => recorded.push(Buffer.from(chunk)))
        socket.pipe(upstream)
      })
      closers.push(async () => await new Promise((resolve) => tapServer.close(resolve)))
      return { port: await listenLocal(tapServer), recorded }
    }

    /** The victim's session through the tap: one secret request, answered. */
    async function victimAsks (port: number, authenticate: boolean): Promise<void> {
      const channel = connect({ port, keyPair: alice, authenticate })
      expect((await channel.request('my password is hunter2')).toString()).to.equal('my password is hunter2')
      channel.end()
      await closing(channel)
    }

    it('plain P2SN: the echo server answers the replayed request to the recorder\'s key (a known limit: no freshness)', async () => {
      const { port: serverPort, handled } = await echoServer(false, false)
      const { port, recorded } = await tap(serverPort)
      await victimAsks(port, false)
      // Passively, the recorder learns nothing of the message: P2SN's one promise to it.
      expect(Buffer.concat(recorded).includes(Buffer.from('hunter2'))).to.equal(false)
      // The client's frames: PUBKEY, key check, client key, then the request.
      const frames = Buffer.concat(recorded).toString('latin1').split('\x04')
      const request = frames[3]!
      const { session } = await clientSession(await dial(serverPort, sockets), mallory, { ignoreErrors: true })
      session.write(Buffer.from(request, 'latin1'))
      const [reply] = await once(session, 'data') as [Buffer]
      expect(decryptMessage(mallory, decodeBase64(reply)).toString()).to.equal('my password is hunter2')
      expect(handled.map((h) => h.message)).to.deep.equal(['my password is hunter2', 'my password is hunter2'])
    })

    it('authenticated mode: the recording holds no P2SN frame, and replaying it fails with ERR_P2SN_AUTHENTICATION', async () => {
      const { port: serverPort, handled, errors } = await echoServer(true, false)
      const { port, recorded } = await tap(serverPort)
      await victimAsks(port, true)
      const bytes = Buffer.concat(recorded)
      expect(bytes.includes(Buffer.from('P2SN:'))).to.equal(false)
      expect(bytes.includes(Buffer.from('LS0tLS1CRUdJTi'))).to.equal(false)
      // Replayed as it was recorded, the victim's TLS session does not start again.
      const socket = await dial(serverPort, sockets)
      // Read what the server says back, or its hang-up would wait behind it.
      socket.resume()
      const closed = closing(socket)
      socket.write(bytes)
      await within(3000, closed, 'the server closing the replay')
      expect(errors.map((e) => e.code)).to.deep.equal(['ERR_P2SN_AUTHENTICATION'])
      expect(handled.map((h) => h.message)).to.deep.equal(['my password is hunter2'])
    })
  })

  describe('a relay that reorders or drops whole frames (plain P2SN only: the authenticated mode is in authentication.test.ts)', () => {
    /** A TCP relay that hands each of the client's frames after the handshake to `alter`. */
    async function frameRelay (serverPort: number, alter: (frame: Buffer, index: number, forward: (f: Buffer) => void) => void): Promise<number> {
      const relayServer = relayTo(serverPort, (socket, upstream) => {
        let tail = Buffer.alloc(0)
        let index = 0
        const forward = (frame: Buffer): void => { upstream.write(Buffer.concat([frame, Buffer.from([0x04])])) }
        socket.on('data', (chunk: Buffer) => {
          let data = Buffer.concat([tail, chunk])
          for (let at = data.indexOf(0x04); at !== -1; at = data.indexOf(0x04)) {
            const frame = data.subarray(0, at)
            data = data.subarray(at + 1)
            // The client's frames 0 to 2 are its handshake: PUBKEY, key check, its key.
            if (index++ < 3) forward(frame)
            else alter(frame, index - 4, forward)
          }
          tail = data
        })
      })
      closers.push(async () => await new Promise((resolve) => relayServer.close(resolve)))
      return await listenLocal(relayServer)
    }

    for (const [name, alter, expected] of [
      ['swaps the first two messages', (frame: Buffer, i: number, forward: (f: Buffer) => void, held: Buffer[]) => {
        if (i === 0) held.push(frame)
        else { forward(frame); if (i === 1) forward(held.pop()!) }
      }, ['second', 'first', 'third']],
      ['drops the second message', (frame: Buffer, i: number, forward: (f: Buffer) => void) => { if (i !== 1) forward(frame) }, ['first', 'third']]
    ] as const) {
      it(`plain P2SN: ${name}, and neither side can tell (a known limit: no ordering, no integrity)`, async () => {
        const { port: serverPort, handled, errors } = await echoServer(false, false)
        const held: Buffer[] = []
        const port = await frameRelay(serverPort, (frame, i, forward) => { alter(frame, i, forward, held) })
        const channel = connect({ port, keyPair: alice })
        closers.push(async () => { channel.destroy() })
        channel.resume()
        for (const message of ['first', 'second', 'third']) channel.write(message)
        await until(() => handled.length === expected.length, 3000, 'the server handling what it got')
        await delay(100)
        expect(handled.map((h) => h.message)).to.deep.equal(expected)
        expect(errors).to.deep.equal([])
      })
    }
  })
})
