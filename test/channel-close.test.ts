/**
 * Two findings of the review of the one-stream channel, each attacked over loopback: a channel
 * over a socket that closes behind the peer's end must close and fail its writes, not hang; and
 * a frame too long for maxMessageBlocks is refused in its place, after the messages before it,
 * pooled or not.
 */
import { once } from 'node:events'
import net from 'node:net'
import { expect } from 'chai'
import {
  P2snError, connect, createServer, decodeBase64, decryptMessage, encodeBase64, encryptMessage, wrap,
  type Channel
} from '../lib/index.js'
import { clientSession } from './helpers/session.js'
import { listenLocal } from './helpers/net.js'
import { within } from './helpers/timing.js'
import { useLoopbackFixture } from './helpers/loopback.js'

describe('Channel: closing and refusing in order', function () {
  this.timeout(20_000)
  const fixture = useLoopbackFixture()
  const { closers } = fixture

  describe('a socket that is not half-open, closed behind the peer\'s end', function () {
    it('closes the channel, and a write made then fails at once instead of waiting for a drain', async () => {
      let accepted: (channel: Channel) => void = () => {}
      const serverSide = new Promise<Channel>((resolve) => { accepted = resolve })
      // net.createServer's default: the socket ends itself, then closes, when the peer ends.
      const listener = net.createServer((socket) => {
        const channel = wrap(socket, { role: 'server', keyPair: fixture.serverKeys })
        channel.on('error', () => {})
        accepted(channel)
      })
      closers.push(() => { listener.close() })
      const client = connect({ port: await listenLocal(listener), keyPair: fixture.clientKeys })
      closers.push(() => { client.destroy() })
      client.on('error', () => {})
      const server = await serverSide
      server.resume()
      await once(client, 'handshake')
      client.end()
      await within(2000, once(server, 'close'), 'the server channel\'s close')
      expect(server.readableEnded).to.equal(true)
      const failure = await within(2000, new Promise<Error | null | undefined>((resolve) => { server.write('too late', resolve) }), 'the write\'s callback')
      expect(failure).to.be.an.instanceof(Error)
    })

    it('still hands over every message that came before the end, then closes', async () => {
      const got: string[] = []
      let closed: () => void = () => {}
      const serverClosed = new Promise<void>((resolve) => { closed = resolve })
      const listener = net.createServer((socket) => {
        const channel = wrap(socket, { role: 'server', keyPair: fixture.serverKeys })
        channel.on('error', () => {})
        channel.on('data', (message: Buffer) => { got.push(message.toString()) })
        channel.on('close', closed)
      })
      closers.push(() => { listener.close() })
      const client = connect({ port: await listenLocal(listener), keyPair: fixture.clientKeys })
      closers.push(() => { client.destroy() })
      client.on('error', () => {})
      for (let i = 0; i < 5; i++) client.write(`message ${i}`)
      client.end()
      await within(5000, serverClosed, 'the server channel\'s close')
      expect(got).to.deep.equal(['message 0', 'message 1', 'message 2', 'message 3', 'message 4'])
    })
  })

  describe('a frame too long for maxMessageBlocks, right after a good message', function () {
    for (const workers of [undefined, 2]) {
      it(`${workers === undefined ? 'inline' : `with ${workers} workers`}: the good message is answered first, then P2SN:ERRORKEY`, async () => {
        const server = createServer({ keyPair: fixture.serverKeys, workers, handler: (message) => `got ${message.length} bytes` })
        server.on('clientError', () => {})
        const port = await listenLocal(server)
        closers.push(() => { server.close() })
        const socket = net.connect(port, '127.0.0.1')
        closers.push(() => { socket.destroy() })
        const { session, server: peer } = await clientSession(socket, fixture.clientKeys, { ignoreErrors: true })
        const frames: Buffer[] = []
        session.on('data', (frame: Buffer) => { frames.push(frame) })
        let failure: unknown
        session.on('error', (err: unknown) => { failure = err })
        const good = encodeBase64(encryptMessage(peer.publicKey, Buffer.alloc(100)))
        // Longer than the Base64 of 32 blocks of a 1024-bit key (5,464 bytes): refused as it arrives.
        const tooLong = Buffer.alloc(6000, 'A')
        // In one write, so that both are in the server's hands at once (the good one still
        // being decrypted when the long one is cut).
        socket.write(Buffer.concat([good, Buffer.from([0x04]), tooLong, Buffer.from([0x04])]))
        await within(5000, new Promise((resolve) => { session.on('close', resolve) }), 'the session\'s close')
        expect(frames.map((frame) => frame.toString('latin1').startsWith('P2SN:') ? frame.toString() : decryptMessage(fixture.clientKeys, decodeBase64(frame)).toString()))
          .to.deep.equal(['got 100 bytes'])
        // P2SN:ERRORKEY came, after the reply: it is what closed the session.
        expect(failure).to.be.an.instanceof(P2snError).with.property('code', 'ERR_P2SN_ERRORKEY')
      })
    }
  })

  it('a refused frame fails the server channel with ERR_P2SN_MESSAGE_TOO_LONG', async () => {
    const errors: unknown[] = []
    const server = createServer({ keyPair: fixture.serverKeys, handler: (message) => message })
    server.on('clientError', (err: unknown) => { errors.push(err) })
    const port = await listenLocal(server)
    closers.push(() => { server.close() })
    const socket = net.connect(port, '127.0.0.1')
    closers.push(() => { socket.destroy() })
    const { session } = await clientSession(socket, fixture.clientKeys, { ignoreErrors: true })
    session.write(Buffer.alloc(6000, 'A'))
    await within(5000, new Promise((resolve) => { session.on('close', resolve) }), 'the session\'s close')
    expect(errors).to.have.length(1)
    expect(errors[0]).to.be.an.instanceof(P2snError).with.property('code', 'ERR_P2SN_MESSAGE_TOO_LONG')
  })
})
