import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { P2snError } from '../lib/index.js'
import { frameDuplex } from '../lib/frame-duplex.js'
import { duplexPair } from './helpers/duplex-pair.js'
import { expectP2snError, expectP2snErrorSync, nextError } from './helpers/errors.js'
import { listenLocal } from './helpers/net.js'
import { delay, expectNoLeakedResources, resourceBaseline, settle, until, within } from './helpers/timing.js'

/** Two connected byte duplexes: loopback TCP sockets, or an in-memory pair cut into chunks. */
type Transport = 'tcp' | 'whole' | 'byte' | 'random'

/** Resolves on `'close'`; call it before the stream can close. */
function closed (stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => { stream.once('close', () => { resolve() }) })
}

/** Every frame `stream` emits until it ends. */
function framesOf (stream: Duplex): Promise<Buffer[]> {
  const frames: Buffer[] = []
  stream.on('data', (frame: Buffer) => { frames.push(frame) })
  return new Promise((resolve) => { stream.once('end', () => { resolve(frames) }) })
}

/** The frames both ways in these tests: short, empty, with every byte value but 0x04, and long. */
function someFrames (long: number): Buffer[] {
  const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== 0x04))
  return [Buffer.from('P2SN:PUBKEY'), Buffer.alloc(0), everyByte, Buffer.from(randomBytes(long).map((b) => b === 0x04 ? 0x05 : b))]
}

describe('frameDuplex', function () {
  this.timeout(20000)

  let baseline: Record<string, number> | undefined
  before(async () => { baseline = await resourceBaseline() })
  after(async () => { await expectNoLeakedResources(baseline) })

  // Everything a test opens, closed after it whatever happened.
  let toDestroy: Array<{ destroy (): unknown }> = []
  let servers: net.Server[] = []
  afterEach(async () => {
    for (const stream of toDestroy) stream.destroy()
    toDestroy = []
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
    servers = []
  })
  function track<T extends { destroy (): unknown }> (stream: T): T {
    toDestroy.push(stream)
    return stream
  }

  /** Two connected half-open TCP sockets on loopback: the client's end and the server's. */
  async function tcpPair (): Promise<[net.Socket, net.Socket]> {
    const server = net.createServer({ allowHalfOpen: true })
    servers.push(server)
    const accepted = once(server, 'connection') as Promise<[net.Socket]>
    const client = track(net.connect({ port: await listenLocal(server), host: '127.0.0.1', allowHalfOpen: true }))
    const [socket] = await accepted
    track(socket)
    await (client.connecting ? once(client, 'connect') : Promise.resolve())
    return [client, socket]
  }

  async function bytePair (transport: Transport): Promise<[Duplex, Duplex]> {
    if (transport === 'tcp') return tcpPair()
    const [a, b] = duplexPair({ chunking: transport, seed: 11 })
    return [track(a), track(b)]
  }

  for (const transport of ['tcp', 'whole', 'byte', 'random'] as const) {
    describe(`over ${transport === 'tcp' ? 'loopback TCP' : `an in-memory pair, ${transport} chunks`}`, () => {
      // Cut small, a long frame costs the pair and the splitter a chunk every few bytes: keep it shorter there.
      const long = transport === 'tcp' || transport === 'whole' ? 300_000 : 20_000

      it('carries frames both ways, each as written, however the bytes are cut', async () => {
        const [a, b] = await bytePair(transport)
        const left = track(frameDuplex(a))
        const right = track(frameDuplex(b))
        const toRight = someFrames(long)
        const toLeft = someFrames(long / 2).reverse()
        const gotRight = framesOf(right)
        const gotLeft = framesOf(left)
        for (const frame of toRight) left.write(frame)
        for (const frame of toLeft) right.write(frame)
        left.end()
        right.end()
        expect(await gotRight).to.deep.equal(toRight)
        expect(await gotLeft).to.deep.equal(toLeft)
      })

      it('takes text and Uint8Arrays as frames too', async () => {
        const [a, b] = await bytePair(transport)
        const left = track(frameDuplex(a))
        const got = framesOf(track(frameDuplex(b)))
        left.write('wörld')
        left.end(new Uint8Array([1, 2, 3]))
        expect(await got).to.deep.equal([Buffer.from('wörld'), Buffer.from([1, 2, 3])])
      })

      it('end() half-closes: the peer sees \'end\', then still writes back, and both close', async () => {
        const [a, b] = await bytePair(transport)
        const left = track(frameDuplex(a))
        const right = track(frameDuplex(b))
        const leftGot = framesOf(left)
        const allClosed = Promise.all([closed(left), closed(right), closed(a), closed(b)])
        left.write('question')
        left.end()
        expect((await framesOf(right)).map(String)).to.deep.equal(['question'])
        // Answer well after the end arrived: nothing was torn down meanwhile.
        await delay(20)
        expect(right.destroyed).to.equal(false)
        expect(b.destroyed).to.equal(false)
        const answers = someFrames(long)
        for (const frame of answers) right.write(frame)
        right.end()
        expect(await leftGot).to.deep.equal(answers)
        await within(2000, allClosed, 'the close of both sides and both sockets')
        expect(a.destroyed && b.destroyed).to.equal(true)
      })

      it('the peer\'s end ends the readable side only: what is still being written goes out', async () => {
        const [a, b] = await bytePair(transport)
        const left = track(frameDuplex(a))
        const right = track(frameDuplex(b))
        const rightGot = framesOf(right)
        // The peer ends first; this side, still writing a long stream, sees 'end' at once.
        right.end()
        const frames = Array.from({ length: 200 }, (_, i) => Buffer.alloc(transport === 'tcp' || transport === 'whole' ? 2000 : 50, 0x41 + (i % 26)))
        const written = (async () => {
          for (const frame of frames) if (!left.write(frame)) await once(left, 'drain')
        })()
        expect(await framesOf(left)).to.deep.equal([])
        await written
        left.end()
        expect(await rightGot).to.deep.equal(frames)
      })

      it('\'finish\' and \'close\' come once both directions are done, not before', async () => {
        const [a, b] = await bytePair(transport)
        const left = track(frameDuplex(a))
        const right = track(frameDuplex(b))
        const events: string[] = []
        left.on('finish', () => events.push('finish'))
        left.on('close', () => events.push('close'))
        const ended = framesOf(left)
        const leftClosed = closed(left)
        left.end('last')
        expect((await framesOf(right)).map(String)).to.deep.equal(['last'])
        await delay(20)
        expect(events).to.deep.equal([])
        right.end()
        await ended
        await within(2000, leftClosed, 'the close')
        expect(events).to.deep.equal(['finish', 'close'])
      })

      it('destroy() is quiet and tears the socket down; the peer sees the end', async () => {
        const [a, b] = await bytePair(transport)
        const left = track(frameDuplex(a))
        const right = track(frameDuplex(b))
        const errors: Error[] = []
        left.on('error', (err) => errors.push(err))
        const peerEnded = framesOf(right)
        const socketClosed = closed(a)
        left.write('one')
        await settle(5)
        left.destroy()
        await within(2000, socketClosed, 'the socket\'s close')
        expect(a.destroyed).to.equal(true)
        await within(2000, peerEnded, 'the peer\'s end')
        await settle(2)
        expect(errors).to.deep.equal([])
      })

      it('destroy(err) emits err and tears the socket down', async () => {
        const [a] = await bytePair(transport)
        const left = track(frameDuplex(a))
        const failed = nextError(left).catch((e: unknown) => e)
        const socketClosed = closed(a)
        const err = new P2snError('ERR_P2SN_PROTOCOL', 'a layer above gave up')
        left.destroy(err)
        await within(2000, socketClosed, 'the socket\'s close')
        expect(await failed).to.equal(err)
      })

      it('an error of the socket comes out as ERR_P2SN_CONNECTION, with it as the cause', async () => {
        const [a] = await bytePair(transport)
        const left = track(frameDuplex(a))
        const failure = nextError(left)
        const boom = new Error('boom')
        a.destroy(boom)
        const err = await expectP2snError(failure, 'ERR_P2SN_CONNECTION')
        expect(err.cause).to.equal(boom)
        expect(err.message).to.include('boom')
        await settle(2)
        expect(left.destroyed).to.equal(true)
      })

      it('passes maxFrameLength on: a longer frame fails with ERR_P2SN_FRAME_TOO_LONG and tears down', async () => {
        const [a, b] = await bytePair(transport)
        const left = track(frameDuplex(a, { maxFrameLength: 100 }))
        const right = track(frameDuplex(b))
        const failure = nextError(left)
        const socketClosed = closed(a)
        const got: Buffer[] = []
        left.on('data', (frame: Buffer) => got.push(frame))
        right.write(Buffer.alloc(100, 0x41))
        right.write(Buffer.alloc(101, 0x42))
        await expectP2snError(failure, 'ERR_P2SN_FRAME_TOO_LONG')
        await within(2000, socketClosed, 'the socket\'s close')
        expect(got).to.deep.equal([Buffer.alloc(100, 0x41)])
      })

      it('passes the tighter limit of the leading frames on', async () => {
        const [a, b] = await bytePair(transport)
        const left = track(frameDuplex(a, { leadingFrames: 1, maxLeadingFrameLength: 11 }))
        const right = track(frameDuplex(b))
        const failure = nextError(left)
        right.write('P2SN:PUBKEY!')
        const err = await expectP2snError(failure, 'ERR_P2SN_FRAME_TOO_LONG')
        expect(err.message).to.include('11 bytes allowed at the start')
      })

      it('fails with ERR_P2SN_TRUNCATED when the peer ends inside a frame', async () => {
        const [a, b] = await bytePair(transport)
        const left = track(frameDuplex(a))
        const failure = nextError(left)
        left.resume()
        b.end('half a fra')
        await expectP2snError(failure, 'ERR_P2SN_TRUNCATED')
      })

      it('refuses to send a frame holding 0x04, and tears down', async () => {
        const [a] = await bytePair(transport)
        const left = track(frameDuplex(a))
        const failure = nextError(left)
        const socketClosed = closed(a)
        left.write(Buffer.from([0x41, 0x04, 0x42]))
        await expectP2snError(failure, 'ERR_P2SN_INVALID_ARGUMENT')
        await within(2000, socketClosed, 'the socket\'s close')
      })
    })
  }

  describe('over loopback TCP only', () => {
    it('a connection reset by the peer comes out as ERR_P2SN_CONNECTION (ECONNRESET)', async () => {
      const [a, b] = await tcpPair()
      const left = track(frameDuplex(a))
      left.resume()
      const failure = nextError(left)
      b.resetAndDestroy()
      const err = await expectP2snError(failure, 'ERR_P2SN_CONNECTION')
      expect((err.cause as NodeJS.ErrnoException).code).to.equal('ECONNRESET')
    })

    it('destroy() after end() lets the frames written go out first, then tears down', async () => {
      const [a, b] = await tcpPair()
      const left = track(frameDuplex(a))
      const right = track(frameDuplex(b))
      // More than the sockets hold, so that most of it still waits in the chain at destroy().
      const frames = Array.from({ length: 40 }, (_, i) => Buffer.alloc(128 * 1024, 0x41 + i))
      const socketClosed = closed(a)
      right.pause()
      for (const frame of frames) left.write(frame)
      left.end()
      left.destroy()
      await delay(50)
      const got = framesOf(right)
      right.resume()
      expect(await got).to.deep.equal(frames)
      await within(2000, socketClosed, 'the socket\'s close')
      expect(left.destroyed).to.equal(true)
    })

    it('a peer that does not read holds that destroy() a second at most', async () => {
      const [a, b] = await tcpPair()
      const left = track(frameDuplex(a))
      track(frameDuplex(b)).pause()
      const socketClosed = closed(a)
      for (let i = 0; i < 40; i++) left.write(Buffer.alloc(128 * 1024, 0x41))
      left.end()
      const start = Date.now()
      left.destroy()
      await within(3000, socketClosed, 'the socket\'s close')
      // It waited for the frames rather than cut them off at once, then gave up.
      expect(Date.now() - start).to.be.at.least(900)
    })

    it('destroy(err) after end() does not wait', async () => {
      const [a, b] = await tcpPair()
      const left = track(frameDuplex(a))
      track(frameDuplex(b)).pause()
      left.on('error', () => {})
      const socketClosed = closed(a)
      for (let i = 0; i < 40; i++) left.write(Buffer.alloc(128 * 1024, 0x41))
      left.end()
      left.destroy(new Error('give up'))
      // Well before the second that a clean destroy() may wait.
      await within(800, socketClosed, 'the socket\'s close')
    })

    it('pushes back: a reader that does not read stops the peer\'s socket', async () => {
      const [a, b] = await tcpPair()
      const left = track(frameDuplex(a))
      const right = track(frameDuplex(b))
      // Nobody reads `left`: the frames back up into the sockets, and the writer is told to wait.
      const frame = Buffer.alloc(64 * 1024, 0x41)
      let writes = 0
      while (right.write(frame) && writes < 1000) writes++
      expect(writes).to.be.below(1000)
      await delay(100)
      // What left's side took off its socket stays small: a frame or two per stage, not all.
      expect(a.bytesRead).to.be.below(16 * frame.length)
      left.pause()
      let received = 0
      left.on('data', () => { received++ })
      left.resume()
      await until(() => received >= writes, 5000, 'every frame read once the reader reads')
    })
  })

  describe('arguments', () => {
    it('refuses limits out of range, and destroys the stream it was given', async () => {
      const [a] = duplexPair()
      expectP2snErrorSync(() => frameDuplex(a, { maxFrameLength: -1 }), 'ERR_P2SN_INVALID_ARGUMENT')
      expect(a.destroyed).to.equal(true)
    })

    it('refuses what is not a stream', () => {
      expectP2snErrorSync(() => frameDuplex({} as Duplex), 'ERR_P2SN_INVALID_ARGUMENT')
      expectP2snErrorSync(() => frameDuplex(undefined as unknown as Duplex), 'ERR_P2SN_INVALID_ARGUMENT')
    })
  })
})
