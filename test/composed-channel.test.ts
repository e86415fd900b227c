// A channel composed by hand (frameDuplex, HandshakeDuplex, the message layers and a layer of
// its own, in pumpify) and a wrap() channel talk to each other over loopback TCP, each in
// either role. Only what either side can observe is checked, so that the test holds whatever
// the channels are made of inside.
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import { Transform, type Duplex, type TransformCallback } from 'node:stream'
import Pumpify from 'pumpify'
import {
  Base64Codec, HandshakeDuplex, RsaCipher, connect, createServer, generateKeyPair, HANDSHAKE_FRAMES, MAX_HANDSHAKE_FRAME_LENGTH,
  type Channel, type KeyPair, type PeerInfo, type Role
} from '../lib/index.js'
import { frameDuplex } from '../lib/frame-duplex.js'
import { listenLocal } from './helpers/net.js'
import { delay, expectNoLeakedResources, resourceBaseline, within } from './helpers/timing.js'

/** A channel composed by hand, what its handshake said of the peer, and its own layer's count. */
interface HandComposed {
  channel: Duplex
  peer: PeerInfo
  handshake: HandshakeDuplex
  /** Messages that went through the layer of our own. */
  counted: () => number
}

/**
 * Composes a channel by hand over `socket`, as examples/hand-composed.ts does: frames, the
 * handshake, and once it has given the peer's key, the message layers around it with a counting
 * layer of our own at the end.
 */
async function composeByHand (socket: net.Socket, role: Role, keyPair: KeyPair): Promise<HandComposed> {
  const frames = frameDuplex(socket, { leadingFrames: HANDSHAKE_FRAMES, maxLeadingFrameLength: MAX_HANDSHAKE_FRAME_LENGTH })
  const handshake = new HandshakeDuplex(frames, { role, keyPair })
  const [peer] = await once(handshake, 'handshake') as [PeerInfo]
  let count = 0
  const counter = new Transform({
    objectMode: true,
    transform (message: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      count++
      callback(null, message)
    }
  })
  const channel = new Pumpify.obj(
    RsaCipher.encryptor(peer.publicKey), Base64Codec.encoder(),
    handshake,
    Base64Codec.decoder(), RsaCipher.decryptor(keyPair), counter
  )
  return { channel, peer, handshake, counted: () => count }
}

/** Every message `stream` emits until it ends. */
function messagesOf (stream: Duplex): Promise<Buffer[]> {
  const out: Buffer[] = []
  stream.on('data', (message: Buffer) => { out.push(message) })
  return new Promise((resolve) => { stream.once('end', () => { resolve(out) }) })
}

/** Resolves on `'close'`; call it before the stream can close. */
function closed (stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => { stream.once('close', () => { resolve() }) })
}

const REPLY = Buffer.from('re:')

function replyTo (message: Buffer): Buffer {
  return Buffer.concat([REPLY, message])
}

describe('a channel composed by hand and a wrap() channel', function () {
  this.timeout(20000)

  let clientKeys: KeyPair
  let serverKeys: KeyPair
  let baseline: Record<string, number> | undefined
  before(async () => {
    [clientKeys, serverKeys] = await Promise.all([generateKeyPair({ bits: 1024 }), generateKeyPair({ bits: 1024 })])
    baseline = await resourceBaseline()
  })
  after(async () => { await expectNoLeakedResources(baseline) })

  // Everything a test opens, closed after it whatever happened.
  let toDestroy: Array<{ destroy (): unknown }> = []
  let toClose: Array<{ close (callback: () => void): unknown }> = []
  afterEach(async () => {
    for (const stream of toDestroy) stream.destroy()
    toDestroy = []
    await Promise.all(toClose.map((server) => new Promise<void>((resolve) => { server.close(() => { resolve() }) })))
    toClose = []
  })
  function track<T extends { destroy (): unknown }> (stream: T): T {
    toDestroy.push(stream)
    return stream
  }

  /** What each side sends: an empty message, every byte value, and one of several RSA blocks. */
  function messages (): Buffer[] {
    const long = randomBytes(3 * serverKeys.publicKey.maxBlockPlaintext + 17)
    return [Buffer.from('hello'), Buffer.alloc(0), Buffer.from(Array.from({ length: 256 }, (_, i) => i)), long, Buffer.from('last ü')]
  }

  it('a hand-composed client and a wrap() server (createServer): messages both ways, the client half-closes first', async () => {
    const server = createServer({ keyPair: serverKeys })
    toClose.push(server)
    const accepted = once(server, 'channel') as Promise<[Channel, PeerInfo]>
    const port = await listenLocal(server)
    const socket = track(net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }))
    const client = await composeByHand(socket, 'client', clientKeys)
    track(client.channel)
    const [channel, serverSaw] = await accepted

    // What each side learned of the other: keys as presented, which plain P2SN does not prove.
    expect(client.peer).to.include({ fingerprint: serverKeys.publicKey.fingerprint, role: 'client', authenticated: false })
    expect(client.peer.publicKey.equals(serverKeys.publicKey)).to.equal(true)
    expect(client.handshake.remoteFingerprint).to.equal(serverKeys.publicKey.fingerprint)
    expect(serverSaw).to.include({ fingerprint: clientKeys.publicKey.fingerprint, role: 'server', authenticated: false })
    expect(channel.remoteFingerprint).to.equal(clientKeys.publicKey.fingerprint)
    expect(channel.remotePublicKey!.equals(clientKeys.publicKey)).to.equal(true)

    // The server answers each message at once, and more after the client's end.
    const sent = messages()
    const later = [randomBytes(2 * clientKeys.publicKey.maxBlockPlaintext + 5), Buffer.from('after your end')]
    const serverGot = messagesOf(channel)
    channel.on('data', (message: Buffer) => { channel.write(replyTo(message)) })
    const clientGot = messagesOf(client.channel)
    const serverClosed = closed(channel)
    for (const message of sent) client.channel.write(message)
    client.channel.end()

    expect(await serverGot).to.deep.equal(sent)
    await delay(20)
    expect(channel.destroyed).to.equal(false)
    for (const message of later) channel.write(message)
    channel.end()
    expect(await clientGot).to.deep.equal([...sent.map(replyTo), ...later])
    expect(client.counted()).to.equal(sent.length + later.length)
    await within(2000, serverClosed, 'the server channel\'s close')
    await within(2000, socket.destroyed ? Promise.resolve() : closed(socket), 'the client socket\'s close')
  })

  it('a wrap() client (connect) and a hand-composed server: messages both ways, the server half-closes first', async () => {
    const composed: Array<Promise<HandComposed>> = []
    const sockets: net.Socket[] = []
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      sockets.push(track(socket))
      composed.push(composeByHand(socket, 'server', serverKeys))
    })
    toClose.push(server)
    const port = await listenLocal(server)
    const client = track(connect({ port, keyPair: clientKeys }))
    const [clientSaw] = await once(client, 'handshake') as [PeerInfo]
    await within(2000, (async () => { while (composed.length === 0) await delay(5) })(), 'the server\'s connection')
    const hand = await composed[0]!
    track(hand.channel)

    expect(clientSaw).to.include({ fingerprint: serverKeys.publicKey.fingerprint, role: 'client', authenticated: false })
    expect(client.remoteFingerprint).to.equal(serverKeys.publicKey.fingerprint)
    expect(client.remotePublicKey!.equals(serverKeys.publicKey)).to.equal(true)
    expect(hand.peer).to.include({ fingerprint: clientKeys.publicKey.fingerprint, role: 'server', authenticated: false })
    expect(hand.peer.publicKey.equals(clientKeys.publicKey)).to.equal(true)

    // Requests answered one by one, as the reference does, until the server ends its side.
    // (A pumpify chain runs on readable-stream 3, which has no writableEnded to ask.)
    let serverEnded = false
    hand.channel.on('data', (message: Buffer) => {
      if (!serverEnded) hand.channel.write(replyTo(message))
    })
    const serverGot = messagesOf(hand.channel)
    const sent = messages()
    for (const message of sent) expect(await client.request(message)).to.deep.equal(replyTo(message))

    // The server ends first; the client sees its end, and still sends.
    const clientGot = messagesOf(client)
    const clientClosed = closed(client)
    const socketClosed = closed(sockets[0]!)
    serverEnded = true
    hand.channel.end(Buffer.from('goodbye'))
    expect((await clientGot).map(String)).to.deep.equal(['goodbye'])
    await delay(20)
    expect(client.destroyed).to.equal(false)
    const later = [randomBytes(2 * serverKeys.publicKey.maxBlockPlaintext + 5), Buffer.from('after your end')]
    for (const message of later) client.write(message)
    client.end()
    expect(await serverGot).to.deep.equal([...sent, ...later])
    expect(hand.counted()).to.equal(sent.length + later.length)
    await within(2000, Promise.all([clientClosed, socketClosed]), 'the client channel\'s and the server socket\'s close')
  })
})
