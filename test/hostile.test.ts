// Hostile peers over real loopback TCP (issue 6): disconnects, resets and half-closes at every
// handshake step and mid-message, slowloris, a 100 MB frame, 500 silent connections, and no
// padding oracle. Each time the server frees the connection and a well-behaved client
// connecting alongside is served normally.
import { expect } from 'chai'
import { once } from 'node:events'
import net from 'node:net'
import {
  P2snError, connect, createServer, decodeBase64, decryptMessage, encodeBase64, encryptMessage, generateKeyPair, parsePublicKey,
  type KeyPair, type PublicKey, type Server, type ServerOptions
} from '../lib/index.js'
import { probeKeyOf } from '../lib/scan/handshake-probe.js'
import { probeContext, probePaddingOracle } from '../lib/scan/probes.js'
import { CIPHERTEXT_CLASSES, ciphertextOf } from './helpers/ciphertext-classes.js'
import { ScriptedPeer } from './helpers/frame-pair.js'
import { listenLocal } from './helpers/net.js'
import { clientSession } from './helpers/session.js'
import { delay, until } from './helpers/timing.js'

const SHORT = { handshakeTimeout: 600, idleTimeout: 600 }

/** How a hostile client leaves. */
const LEAVES = ['half-closes', 'closes', 'resets'] as const

describe('hostile peers over loopback TCP', function () {
  this.timeout(60_000)
  let serverKeys: KeyPair
  let clientKeys: KeyPair
  let server: Server
  let port: number
  const errors: P2snError[] = []
  const sockets: net.Socket[] = []

  before(async () => {
    serverKeys = await generateKeyPair({ bits: 1024 })
    clientKeys = await generateKeyPair({ bits: 1024 })
  })

  async function start (options: ServerOptions = {}): Promise<void> {
    errors.length = 0
    server = createServer({ keyPair: serverKeys, handler: (m) => m, ...SHORT, ...options })
    server.on('clientError', (err: Error) => {
      expect(err, String(err)).to.be.instanceOf(P2snError)
      errors.push(err as P2snError)
    })
    port = await listenLocal(server)
  }

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })

  async function rawSocket (): Promise<net.Socket> {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    sockets.push(socket)
    await once(socket, 'connect')
    return socket
  }

  /** A well-behaved client: connects, asks, and must get its answer within `ms`. */
  async function served (ms = 3000): Promise<void> {
    const channel = connect({ port, keyPair: clientKeys })
    const started = Date.now()
    try {
      const reply = await channel.request('are you still serving?')
      expect(reply.toString()).to.equal('are you still serving?')
      expect(Date.now() - started).to.be.below(ms)
    } finally {
      channel.destroy()
    }
  }

  /** Waits until the server has no connection left (or fails after `ms`). */
  async function freed (ms = 3000): Promise<void> {
    const deadline = Date.now() + ms
    while (server.connections > 0) {
      if (Date.now() > deadline) throw new Error(`the server still holds ${server.connections} connections after ${ms} ms`)
      await delay(20)
    }
  }

  function leave (socket: net.Socket, how: (typeof LEAVES)[number]): void {
    if (how === 'half-closes') socket.end()
    else if (how === 'closes') socket.destroy()
    else socket.resetAndDestroy()
  }

  /** Plays our side of the handshake by hand, up to `stage` frames exchanged (0 to 6). */
  async function handshakeUpTo (stage: number): Promise<{ socket: net.Socket, peer: ScriptedPeer, serverKey?: PublicKey }> {
    const socket = await rawSocket()
    const peer = new ScriptedPeer(socket)
    let serverKey: PublicKey | undefined
    if (stage >= 1) peer.send('P2SN:PUBKEY')
    if (stage >= 2) serverKey = parsePublicKey(decodeBase64((await peer.read())!))
    if (stage >= 3) {
      peer.send(encodeBase64(encryptMessage(serverKey!, 'P2SN:KEYCHECK')))
      expect((await peer.read())!.toString()).to.equal('P2SN:PUBKEY') // step 4
    }
    if (stage >= 5) peer.send(encodeBase64(Buffer.from(clientKeys.publicKey.toPem())))
    if (stage >= 6) expect(decryptMessage(clientKeys, decodeBase64((await peer.read())!)).toString()).to.equal('P2SN:KEYCHECK')
    return { socket, peer, serverKey }
  }

  describe('the peer leaves at every handshake step and mid-message', () => {
    beforeEach(async () => { await start() })

    const STAGES: Record<number, string> = {
      0: 'before step 1',
      1: 'after step 1 (PUBKEY)',
      2: 'after step 2 (server key)',
      3: 'after steps 3-4 (KEYCHECK, PUBKEY)',
      5: 'after step 5 (client key)',
      6: 'after step 6 (KEYCHECK), the handshake done'
    }
    for (const [stage, when] of Object.entries(STAGES).map(([k, v]) => [Number(k), v] as const)) {
      for (const how of LEAVES) {
        it(`${how} ${when}: freed with a coded error or a clean end, others served`, async () => {
          const before = errors.length
          const { socket } = await handshakeUpTo(stage)
          leave(socket, how)
          await freed()
          for (const err of errors.slice(before)) {
            expect(['ERR_P2SN_CLOSED', 'ERR_P2SN_CONNECTION', 'ERR_P2SN_TRUNCATED']).to.include(err.code)
          }
          await served()
        })
      }
    }

    for (const how of LEAVES) {
      it(`${how} in the middle of a message frame: freed, and others are served`, async () => {
        const before = errors.length
        const { socket, peer, serverKey } = await handshakeUpTo(6)
        const frame = encodeBase64(encryptMessage(serverKey!, 'half of me'))
        peer.sendBytes(frame.subarray(0, 100))
        await delay(50)
        leave(socket, how)
        await freed()
        expect(errors.slice(before).map((e) => e.code)).to.have.length(1)
        expect(['ERR_P2SN_CLOSED', 'ERR_P2SN_CONNECTION', 'ERR_P2SN_TRUNCATED']).to.include(errors.at(-1)!.code)
        await served()
      })
    }
  })

  describe('slow and flooding peers', () => {
    beforeEach(async () => { await start() })

    /** Calls `drip` every 50 ms until the server closes `socket`, a well-behaved client being served meanwhile. */
    async function dripUntilDropped (socket: net.Socket, drip: () => void): Promise<void> {
      const timer = setInterval(drip, 50)
      try {
        await served()
        await once(socket, 'close')
      } finally {
        clearInterval(timer)
      }
    }

    it('slowloris in the handshake (a byte every 50 ms): dropped at handshakeTimeout, others served meanwhile', async () => {
      const socket = await rawSocket()
      const bytes = Buffer.from('P2SN:PUBKEY\x04')
      let i = 0
      await dripUntilDropped(socket, () => { if (!socket.destroyed) socket.write(bytes.subarray(i % bytes.length, (i++ % bytes.length) + 1)) })
      expect(errors.map((e) => e.code)).to.deep.equal(['ERR_P2SN_HANDSHAKE_TIMEOUT'])
    })

    it('slowloris after the handshake (a frame a byte at a time): dropped at idleTimeout', async () => {
      const { socket, peer, serverKey } = await handshakeUpTo(6)
      const frame = encodeBase64(encryptMessage(serverKey!, 'slow'))
      let i = 0
      await dripUntilDropped(socket, () => { if (i < frame.length) peer.sendBytes(frame.subarray(i, ++i)) })
      expect(errors.map((e) => e.code)).to.deep.equal(['ERR_P2SN_IDLE_TIMEOUT'])
    })

    for (const stage of [0, 6]) {
      it(`a 100 MB frame with no terminator ${stage === 0 ? 'instead of the handshake' : 'after the handshake'}: refused as it arrives, never buffered`, async () => {
        if (stage > 0) {
          // Held to maxFrameLength alone: by default the server refuses such a frame far sooner (below).
          await new Promise((resolve) => server.close(resolve))
          await start({ maxMessageBlocks: Infinity })
        }
        const { socket } = await handshakeUpTo(stage)
        const heapBefore = process.memoryUsage().heapUsed + process.memoryUsage().external
        const chunk = Buffer.alloc(64 * 1024, 0x41)
        let sent = 0
        while (sent < 100 * 1024 * 1024 && !socket.destroyed && socket.writable) {
          if (!socket.write(chunk)) {
            // The server hangs up mid-write: 'error' (a reset) and 'close' both mean stop.
            const drained = await Promise.race([once(socket, 'drain').then(() => true, () => false), once(socket, 'close').then(() => false)])
            if (!drained) break
          }
          sent += chunk.length
        }
        if (!socket.destroyed) await once(socket, 'close').catch(() => {})
        expect(errors.map((e) => e.code)).to.deep.equal(['ERR_P2SN_FRAME_TOO_LONG'])
        // Refused after 8 KiB (handshake) or 1 MiB (data), plus what the kernel had buffered.
        expect(socket.bytesWritten).to.be.below(32 * 1024 * 1024)
        const grown = process.memoryUsage().heapUsed + process.memoryUsage().external - heapBefore
        expect(grown).to.be.below(48 * 1024 * 1024)
        await served()
      })
    }

    it('a frame after the handshake longer than maxMessageBlocks blocks can take: refused with P2SN:ERRORKEY as it arrives', async () => {
      const { socket, peer } = await handshakeUpTo(6)
      // The Base64 of 32 blocks of the server's 1024-bit key is 5,464 bytes.
      const closed = once(socket, 'close')
      for (let i = 0; i < 64 && !socket.destroyed; i++) socket.write(Buffer.alloc(1024, 0x41))
      expect((await peer.read())?.toString()).to.equal('P2SN:ERRORKEY')
      await closed
      await until(() => errors.length > 0, 2000, 'the server\'s clientError')
      expect(errors.map((e) => e.code)).to.deep.equal(['ERR_P2SN_MESSAGE_TOO_LONG'])
      expect(errors[0]!.message).to.include('5464 bytes')
      await served()
    })

    it('a refused peer that never hangs up: the server lets go of its socket all the same', async () => {
      // No idle timeout, which would close it too: the refusal alone must.
      await new Promise((resolve) => server.close(resolve))
      await start({ idleTimeout: 0 })
      // Half-open, it neither ends its side nor goes away: only the server can close this socket.
      const { socket, peer } = await handshakeUpTo(6)
      socket.allowHalfOpen = true
      peer.send('not base64!')
      expect((await peer.read())?.toString()).to.equal('P2SN:ERRORKEY')
      const openSockets = async (): Promise<number> => await new Promise((resolve) => { server.server.getConnections((_err, count) => { resolve(count) }) })
      await until(async () => await openSockets() === 0, 3000, 'the server letting go of every socket')
      expect(await openSockets(), 'sockets the server still holds').to.equal(0)
      expect(errors.map((e) => e.code)).to.deep.equal(['ERR_P2SN_BAD_BASE64'])
    })

    it('messages nobody reads: the server takes a few frames off the socket, then pushes back', async () => {
      await new Promise((resolve) => server.close(resolve))
      let delivered = 0
      // The handshake's limit is not what this tests: a loaded machine gets all the time it needs.
      await start({ handler: undefined, idleTimeout: 0, handshakeTimeout: 10_000, trace: (event) => { if (event.direction === 'in' && event.step === 'message') delivered++ } })
      const { peer, serverKey } = await handshakeUpTo(6)
      const frame = encodeBase64(encryptMessage(serverKey!, 'unread'))
      for (let i = 0; i < 300; i++) peer.send(frame)
      await delay(500)
      // The channel holds 2 unread messages, then pauses the socket: with Node's default of 16 a
      // stage, the old chain of streams took about 100.
      expect(delivered).to.be.within(1, 16)
      expect(errors).to.deep.equal([])
    })

    it('messages nobody reads, pooled server: no more than four more frames, those in the worker\'s hands', async () => {
      await new Promise((resolve) => server.close(resolve))
      let delivered = 0
      // As above; and the pool's worker starts first, which a loaded machine takes its time over.
      await start({ handler: undefined, idleTimeout: 0, handshakeTimeout: 10_000, workers: 1, trace: (event) => { if (event.direction === 'in' && event.step === 'message') delivered++ } })
      const { peer, serverKey } = await handshakeUpTo(6)
      const frame = encodeBase64(encryptMessage(serverKey!, 'unread'))
      for (let i = 0; i < 300; i++) peer.send(frame)
      await delay(500)
      expect(delivered).to.be.within(1, 16 + 4)
      expect(errors).to.deep.equal([])
    })

    it('500 connections that say nothing: a real client is served at once, and all 500 are freed by the timeout', async () => {
      const silent = await Promise.all(Array.from({ length: 500 }, async () => rawSocket()))
      await served(2000)
      await Promise.all(silent.map(async (socket) => socket.destroyed ? undefined : once(socket, 'close')))
      await freed()
      expect(new Set(errors.map((e) => e.code))).to.deep.equal(new Set(['ERR_P2SN_HANDSHAKE_TIMEOUT', 'ERR_P2SN_SERVER_BUSY']))
    })
  })

  describe('no padding oracle', () => {
    /** What a class of ciphertext makes the server do: the frames it sends back in 300 ms, and whether it hangs up. */
    async function observe (cls: (typeof CIPHERTEXT_CLASSES)[number], replies: boolean): Promise<{ lengths: number[], plaintexts: string[], closed: boolean }> {
      // Our own session over TCP, after a real handshake: it sends the crafted frame as it is.
      const { session: raw } = await clientSession(await rawSocket(), clientKeys, { ignoreErrors: true })
      const frames: Buffer[] = []
      raw.on('data', (frame: Buffer) => frames.push(frame))
      let closed = false
      raw.on('close', () => { closed = true })
      raw.write(encodeBase64(ciphertextOf(cls, serverKeys, Buffer.from('probe'))))
      await delay(300)
      raw.destroy()
      return {
        lengths: frames.map((f) => f.length),
        plaintexts: replies ? frames.map((f) => decryptMessage(clientKeys, decodeBase64(f)).toString('hex')) : frames.map((f) => f.toString('hex')),
        closed
      }
    }

    for (const [where, options] of [['', {}], [', decrypted in a worker', { workers: 1, handshakeTimeout: 10_000 }]] as const) {
      it(`the key check (step 3${where}): P2SN:PUBKEY only for P2SN:KEYCHECK well padded; the same P2SN:ERRORKEY and close for every bad padding and every other message`, async () => {
        await start(options)
        const seen: string[] = []
        for (const cls of CIPHERTEXT_CLASSES) {
          for (const text of ['P2SN:KEYCHECK', 'P2SN:KEYCHECX', 'probe']) {
            const { socket, peer } = await handshakeUpTo(2)
            peer.send(encodeBase64(ciphertextOf(cls, serverKeys, Buffer.from(text))))
            const first = (await peer.read())?.toString()
            const answer = first === 'P2SN:PUBKEY' ? first : `${first}, then ${String(await peer.read())}`
            socket.destroy()
            expect(answer, `${cls}, ${text}`).to.equal(cls === 'valid' && text === 'P2SN:KEYCHECK' ? 'P2SN:PUBKEY' : 'P2SN:ERRORKEY, then null')
            seen.push(answer)
          }
        }
        await freed()
        // The one that passed was left at step 5: the server saw it close there.
        expect(errors.map((err) => err.code).sort()).to.deep.equal([...Array<string>(seen.length - 1).fill('ERR_P2SN_BAD_KEYCHECK'), 'ERR_P2SN_CLOSED'])
      })
    }

    it('a server that does not answer: the same bytes (none) and the connection kept, for every class', async () => {
      await start({ handler: undefined, idleTimeout: 0 })
      for (const cls of CIPHERTEXT_CLASSES) {
        expect(await observe(cls, false), cls).to.deep.equal({ lengths: [], plaintexts: [], closed: false })
      }
      expect(errors).to.deep.equal([])
    })

    it('a server whose handler answers a constant: the same reply and the connection kept, for every class', async () => {
      await start({ handler: () => 'received', idleTimeout: 0 })
      const seen = []
      for (const cls of CIPHERTEXT_CLASSES) seen.push(await observe(cls, true))
      const expected = { lengths: [seen[0]!.lengths[0]], plaintexts: [Buffer.from('received').toString('hex')], closed: false }
      for (const [i, cls] of CIPHERTEXT_CLASSES.entries()) expect(seen[i], cls).to.deep.equal(expected)
      expect(errors).to.deep.equal([])
    })

    // The scanner's probe (p2sn scan) against the same servers: what it calls safe is what these
    // tests prove, and it must see the oracle that rejection: 'error' opens.
    async function scannerVerdict (): Promise<{ verdict: string, evidence: string }> {
      const context = probeContext({ host: '127.0.0.1', port, timeout: 1000 }, probeKeyOf(clientKeys))
      return await probePaddingOracle(context, true)
    }

    it('the scanner\'s padding-oracle probe passes a server that does not answer, and one that answers a constant', async () => {
      await start({ handler: undefined, idleTimeout: 0 })
      const silent = await scannerVerdict()
      expect(silent.verdict, silent.evidence).to.equal('pass')
      expect(silent.evidence).to.include(`silence for all ${CIPHERTEXT_CLASSES.length} classes`)
      await new Promise((resolve) => server.close(resolve))
      await start({ handler: () => 'received', idleTimeout: 0 })
      const constant = await scannerVerdict()
      expect(constant.verdict, constant.evidence).to.equal('pass')
      expect(constant.evidence).to.include(`reply for all ${CIPHERTEXT_CLASSES.length} classes`)
      expect(errors).to.deep.equal([])
    })

    it('the scanner\'s padding-oracle probe fails a server with rejection: \'error\', naming the classes it tells apart', async () => {
      await start({ handler: () => 'received', idleTimeout: 0, rejection: 'error' })
      const { verdict, evidence } = await scannerVerdict()
      expect(verdict, evidence).to.equal('fail')
      expect(evidence).to.match(/^padding oracle: /)
      expect(evidence).to.include('reply for valid')
      for (const cls of CIPHERTEXT_CLASSES.filter((c) => c !== 'valid')) expect(evidence).to.include(cls)
    })
  })
})
