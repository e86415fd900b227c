import { expect } from 'chai'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { finished } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import Pumpify from 'pumpify'
import {
  Channel, connect, createServer, encodeBase64, FrameJoiner, FrameSplitter, generateKeyPair, HandshakeDuplex,
  joinDuplex, opensslEngine, P2snError, parsePrivateKey, RsaPool, wrap,
  type ConnectOptions, type FrameTransport, type KeyPair, type RsaEngine, type Server, type ServerOptions, type TraceEvent, type WrapOptions
} from '../lib/index.js'
import { expectP2snError, expectP2snErrorSync } from './helpers/errors.js'
import { duplexPair, type ChunkingPairEnd, type PairChunking } from './helpers/duplex-pair.js'
import { fixtureText } from './helpers/fixtures.js'
import { listenLocal } from './helpers/net.js'
import { delay, expectNoLeakedResources, resourceBaseline, settle, within } from './helpers/timing.js'

const TLS_KEY = readFileSync(new URL('./fixtures/tls/key.pem', import.meta.url))
const TLS_CERT = readFileSync(new URL('./fixtures/tls/cert.pem', import.meta.url))
const ECHO_SERVER = fileURLToPath(new URL('./fixtures/stdio/echo-server.ts', import.meta.url))
const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url))
const ECHO = Buffer.from('echo:')

/** `echo:` and the message: what every echo server of this file answers. */
function echoOf (message: Uint8Array | string): Buffer {
  return Buffer.concat([ECHO, Buffer.from(message)])
}

/** Resolves on `'close'`; call it before the stream can close. */
function closed (stream: { on (event: 'close', listener: () => void): unknown }): Promise<void> {
  return new Promise((resolve) => { stream.on('close', () => { resolve() }) })
}

/** Every 'error' a stream emits, from now on. */
function errorsOf (stream: { on (event: 'error', listener: (err: Error) => void): unknown }): Error[] {
  const errors: Error[] = []
  stream.on('error', (err) => { errors.push(err) })
  return errors
}

/** Every message a stream emits until it ends. */
function messagesOf (stream: Channel): Promise<Buffer[]> {
  const out: Buffer[] = []
  stream.on('data', (message: Buffer) => { out.push(message) })
  return new Promise((resolve) => { stream.on('end', () => { resolve(out) }) })
}

/** The length of the Base64 frame that carries `length` plaintext bytes to a `bits`-bit key. */
function frameLength (length: number, bits: number): number {
  const k = bits / 8
  const blocks = Math.max(1, Math.ceil(length / (k - 11)))
  return encodeBase64(Buffer.alloc(blocks * k)).length
}

describe('Channel end to end', function () {
  this.timeout(20000)

  const keys: Record<'c1024' | 's1024' | 'c2048' | 's2048' | 'k4096', KeyPair> = {} as never
  let baseline: Record<string, number> | undefined
  before(async function () {
    const [c1024, s1024, c2048, s2048] = await Promise.all(
      [1024, 1024, 2048, 2048].map((bits) => generateKeyPair({ bits }))
    )
    // A 4096-bit key takes seconds to make: the fixture's instead.
    const k4096 = parsePrivateKey(fixtureText('implicit-rejection/k4096.pem'))
    Object.assign(keys, { c1024, s1024, c2048, s2048, k4096 })
  })

  // Everything a test opens, closed after it whatever happened.
  let toDestroy: Array<{ destroy (): unknown }> = []
  let servers: Server[] = []
  let children: ChildProcess[] = []
  function track<T extends { destroy (): unknown }> (stream: T): T {
    toDestroy.push(stream)
    return stream
  }
  afterEach(async function () {
    for (const stream of toDestroy) stream.destroy()
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill()
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
    toDestroy = []
    servers = []
    children = []
  })

  /** A listening server; resolves with it and its port. */
  async function listen (options: ServerOptions, onChannel?: (channel: Channel) => void): Promise<{ server: Server, port: number }> {
    const server = createServer(options, onChannel)
    servers.push(server)
    return { server, port: await listenLocal(server) }
  }

  /** A TCP echo server with `serverOptions` and a client connected to it. */
  async function overTcp (serverOptions: ServerOptions, clientOptions: Omit<ConnectOptions, 'port'>): Promise<{ server: Server, client: Channel }> {
    const { server, port } = await listen({ handler: echoOf, ...serverOptions })
    return { server, client: track(connect({ port, ...clientOptions })) }
  }

  /** Both ends of the in-memory pair wrapped, the server end answering each message with echoOf. */
  function overPair (chunking: PairChunking, client: Omit<WrapOptions, 'role'>, server: Omit<WrapOptions, 'role'>, seed = 7): { client: Channel, server: Channel, a: ChunkingPairEnd, b: ChunkingPairEnd } {
    const [a, b] = duplexPair({ chunking, seed })
    const channels = {
      client: track(wrap(track(a), { ...client, role: 'client' })),
      server: track(wrap(track(b), { ...server, role: 'server' })),
      a,
      b
    }
    channels.server.on('data', (message: Buffer) => { channels.server.write(echoOf(message)) })
    channels.server.on('end', () => { channels.server.end() })
    return channels
  }

  /** A child process running test/fixtures/stdio/echo-server.ts with `serverKeys`, and a client channel over its stdio. */
  function overChildStdio (clientKeys: KeyPair, serverKeys: KeyPair): { client: Channel, child: ChildProcess, stderr: () => string } {
    const child = spawn(process.execPath, ['--import', 'tsx', ECHO_SERVER], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, P2SN_TEST_KEY: serverKeys.privateKey.toPem() },
      stdio: ['pipe', 'pipe', 'pipe']
    })
    children.push(child)
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const client = track(wrap(joinDuplex(child.stdout!, child.stdin!), { role: 'client', keyPair: clientKeys }))
    return { client, child, stderr: () => stderr }
  }

  /**
   * The exchange every transport must carry: requests queued before the handshake, an empty
   * one, a multi-block one and one in every byte value, answered in order; then a half-close
   * that closes the channel.
   */
  async function exchange (client: Channel, serverKeys: KeyPair): Promise<void> {
    const handshake = once(client, 'handshake')
    const long = randomBytes(3 * serverKeys.publicKey.maxBlockPlaintext + 17)
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const requests: Array<Buffer | string> = ['hello', '', long, all, 'last ü']
    const replies = await Promise.all(requests.map((request) => client.request(request)))
    expect(replies.map((reply) => Buffer.isBuffer(reply))).to.deep.equal(requests.map(() => true))
    expect(replies).to.deep.equal(requests.map(echoOf))
    const [peer] = await handshake as [{ fingerprint: string }]
    expect(peer.fingerprint).to.equal(serverKeys.publicKey.fingerprint)
    expect(client.remotePublicKey!.equals(serverKeys.publicKey)).to.equal(true)
    const done = closed(client)
    const ended = once(client, 'end')
    client.end()
    await ended
    await done
  }

  describe('beforehand', function () {
    it('counts the handles open before any channel (mocha\'s own: its stdio, this test\'s timeout)', async () => {
      baseline = await resourceBaseline()
    })
  })

  describe('transports', function () {
    it('runs over TCP loopback (createServer + connect)', async () => {
      const { server, client } = await overTcp({ keyPair: keys.s2048 }, { keyPair: keys.c2048 })
      const channelClosed = new Promise<void>((resolve) => server.once('channel', (channel: Channel) => { channel.on('close', resolve) }))
      await exchange(client, keys.s2048)
      await channelClosed
      expect(server.connections).to.equal(0)
    })

    it('runs over TLS with a trusted self-signed certificate (ca + servername)', async () => {
      const tls = { key: TLS_KEY, cert: TLS_CERT }
      const { server, client } = await overTcp({ keyPair: keys.s1024, tls }, { keyPair: keys.c1024, host: '127.0.0.1', tls: { ca: TLS_CERT, servername: 'localhost' } })
      const secure = new Promise<boolean>((resolve) => server.server.once('secureConnection', (socket: { encrypted?: boolean }) => { resolve(socket.encrypted === true) }))
      await exchange(client, keys.s1024)
      expect(await secure).to.equal(true)
    })

    it('refuses TLS to a server whose certificate it does not trust, with a code', async () => {
      const { port } = await listen({ keyPair: keys.s1024, tls: { key: TLS_KEY, cert: TLS_CERT }, handler: echoOf })
      const client = track(connect({ port, keyPair: keys.c1024, tls: { servername: 'localhost' } }))
      const errors = errorsOf(client)
      const rejected = expectP2snError(client.request('hello'), 'ERR_P2SN_CONNECTION')
      const err = await rejected
      expect((err.cause as { code?: string }).code).to.equal('DEPTH_ZERO_SELF_SIGNED_CERT')
      await settle(5)
      expect(errors).to.have.length(1)
    })

    for (const chunking of ['random', 'byte'] as const) {
      it(`runs over the in-memory pair cut ${chunking === 'byte' ? 'a byte at a time' : 'at seeded random places'} (wrap on both ends)`, async () => {
        const { client, server, a, b } = overPair(chunking, { keyPair: keys.c1024 }, { keyPair: keys.s1024 })
        const serverClosed = closed(server)
        await exchange(client, keys.s1024)
        await serverClosed
        expect(a.destroyed && b.destroyed, 'both ends of the pair are closed').to.equal(true)
        // The transport really cut the bytes as asked.
        for (const end of [a, b]) {
          if (chunking === 'byte') expect(end.chunksWritten).to.equal(end.bytesWritten)
          else expect(end.chunksWritten).to.be.within(end.bytesWritten / 5, end.bytesWritten / 2)
        }
      })
    }

    it('runs over a child process\'s stdio (the child wraps process.stdin/stdout as the server)', async () => {
      const { client, child, stderr } = overChildStdio(keys.c2048, keys.s1024)
      const exited = once(child, 'exit')
      await exchange(client, keys.s1024)
      const [code] = await exited as [number]
      expect(code, `the child's stderr: ${stderr()}`).to.equal(0)
    })
  })

  describe('key sizes', function () {
    const sizes: Array<[number, number]> = [[1024, 1024], [2048, 2048], [4096, 4096], [1024, 4096], [4096, 1024], [2048, 1024], [1024, 2048]]
    const keyOf = (bits: number, role: 'client' | 'server'): KeyPair =>
      bits === 4096 ? keys.k4096 : bits === 2048 ? (role === 'client' ? keys.c2048 : keys.s2048) : (role === 'client' ? keys.c1024 : keys.s1024)

    for (const [clientBits, serverBits] of sizes) {
      it(`carries messages with a ${clientBits}-bit client and a ${serverBits}-bit server, each encrypted to the receiver's key`, async () => {
        const clientFrames: TraceEvent[] = []
        const serverFrames: TraceEvent[] = []
        const message = (e: TraceEvent): boolean => e.step === 'message'
        const { client } = overPair('random',
          { keyPair: keyOf(clientBits, 'client'), trace: (e) => { if (message(e)) clientFrames.push(e) } },
          { keyPair: keyOf(serverBits, 'server'), trace: (e) => { if (message(e)) serverFrames.push(e) } },
          clientBits + serverBits)
        const oneBlock = randomBytes(serverBits / 8 - 11)
        const threeBlocks = randomBytes(2 * (serverBits / 8 - 11) + 1)
        expect(await client.request(oneBlock)).to.deep.equal(echoOf(oneBlock))
        expect(await client.request(threeBlocks)).to.deep.equal(echoOf(threeBlocks))
        expect(client.remotePublicKey!.bits).to.equal(serverBits)
        // Requests go out sized for the server's key, replies for the client's.
        const lengths = (frames: TraceEvent[], direction: 'in' | 'out'): number[] => frames.filter((e) => e.direction === direction).map((e) => e.frame.length)
        const requestLengths = [frameLength(oneBlock.length, serverBits), frameLength(threeBlocks.length, serverBits)]
        const replyLengths = [frameLength(oneBlock.length + ECHO.length, clientBits), frameLength(threeBlocks.length + ECHO.length, clientBits)]
        expect(lengths(clientFrames, 'out')).to.deep.equal(requestLengths)
        expect(lengths(serverFrames, 'in')).to.deep.equal(requestLengths)
        expect(lengths(serverFrames, 'out')).to.deep.equal(replyLengths)
        expect(lengths(clientFrames, 'in')).to.deep.equal(replyLengths)
      })
    }
  })

  describe('request()', function () {
    it('resolves replies in order and keeps one request in flight: the server never sees a second before it answered the first', async () => {
      const wire: string[] = []
      let active = 0
      let most = 0
      const { client } = await overTcp({
        keyPair: keys.s1024,
        trace: (e) => { if (e.step === 'message') wire.push(e.direction) },
        // The first requests take longest: an answer overtaking another would show.
        handler: async (message) => {
          active++
          most = Math.max(most, active)
          await delay(Math.max(0, 12 - 3 * Number(message.toString())))
          active--
          return `reply ${message.toString()}`
        }
      }, { keyPair: keys.c1024 })
      const replies = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => client.request(String(i))))
      expect(replies.map(String)).to.deep.equal([0, 1, 2, 3, 4, 5].map((i) => `reply ${i}`))
      expect(most).to.equal(1)
      expect(wire).to.deep.equal(Array.from({ length: 6 }, () => ['in', 'out']).flat())
    })

    it('rejects with ERR_P2SN_UNEXPECTED_ERROR when the handler throws or rejects, and the channel keeps working', async () => {
      const handlerErrors: unknown[] = []
      const { server, client } = await overTcp({
        keyPair: keys.s1024,
        handler: (message) => {
          if (message.toString() === 'throw') throw new Error('sync failure')
          if (message.toString() === 'reject') return Promise.reject(new Error('async failure'))
          return message
        }
      }, { keyPair: keys.c1024 })
      server.on('channel', (channel: Channel) => channel.on('handlerError', (err: unknown) => handlerErrors.push(err)))
      const results = await Promise.allSettled(['a', 'throw', 'b', 'reject', 'c'].map((m) => client.request(m)))
      expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled'])
      for (const i of [1, 3]) {
        const reason = (results[i] as PromiseRejectedResult).reason as unknown
        expect(reason).to.be.an.instanceof(P2snError)
        expect((reason as P2snError).code).to.equal('ERR_P2SN_UNEXPECTED_ERROR')
      }
      expect([0, 2, 4].map((i) => String((results[i] as PromiseFulfilledResult<Buffer>).value))).to.deep.equal(['a', 'b', 'c'])
      expect(handlerErrors.map((e) => (e as Error).message)).to.deep.equal(['sync failure', 'async failure'])
      expect(String(await client.request('still working'))).to.equal('still working')
      expect(client.destroyed).to.equal(false)
    })

    it('sends what the handler returns: a string as UTF-8, a Uint8Array, a Buffer, undefined as an empty reply, from sync or async handlers', async () => {
      const replies: Record<string, () => unknown> = {
        string: () => 'grüße',
        bytes: () => new Uint8Array([0, 1, 4, 255]),
        view: () => new Uint8Array([9, 9, 7, 8, 9]).subarray(2, 4),
        buffer: () => Buffer.from('buf'),
        undefined: () => undefined,
        async: async () => { await delay(5); return 'later' }
      }
      const { client } = await overTcp({
        keyPair: keys.s1024,
        handler: (message) => replies[message.toString()]!() as string
      }, { keyPair: keys.c1024 })
      const got = await Promise.all(Object.keys(replies).map((name) => client.request(name)))
      expect(got).to.deep.equal([
        Buffer.from('grüße', 'utf8'), Buffer.from([0, 1, 4, 255]), Buffer.from([7, 8]), Buffer.from('buf'), Buffer.alloc(0), Buffer.from('later')
      ])
      for (const reply of got) expect(Buffer.isBuffer(reply)).to.equal(true)
    })

    it('round-trips multi-block messages (longer than k - 11) both ways', async () => {
      // The 5,005-byte reply is 43 blocks of the 1024-bit client key, over the default of 32
      // that each side would take and so send.
      const { client } = await overTcp({ keyPair: keys.s2048, maxMessageBlocks: 43 }, { keyPair: keys.c1024, maxMessageBlocks: 43 })
      for (const length of [245, 246, 490, 491, 5000]) {
        const message = randomBytes(length)
        expect(await client.request(message), `${length} bytes`).to.deep.equal(echoOf(message))
      }
    })

    it('maxMessageBlocks: a server refuses a message over it with P2SN:ERRORKEY, before its handler', async () => {
      const seen: number[] = []
      const { server, client } = await overTcp({ keyPair: keys.s1024, maxMessageBlocks: 2, handler: (m) => { seen.push(m.length); return m } }, { keyPair: keys.c1024 })
      const refusal = new Promise<P2snError>((resolve) => { server.once('clientError', resolve) })
      expect((await client.request(randomBytes(234))).length).to.equal(234)
      await expectP2snError(client.request(randomBytes(235)), 'ERR_P2SN_ERRORKEY')
      expect((await refusal).code).to.equal('ERR_P2SN_MESSAGE_TOO_LONG')
      expect(seen).to.deep.equal([234])
    })

    it('maxMessageBlocks: a server answers P2SN:UNEXPECTEDERROR rather than send a reply its client would refuse', async () => {
      const { client } = await overTcp({ keyPair: keys.s1024 }, { keyPair: keys.c1024 })
      // 32 blocks of the 1024-bit client key hold 3,744 bytes; echoOf adds 'echo:'.
      expect((await client.request(randomBytes(3739))).length).to.equal(3744)
      await expectP2snError(client.request(randomBytes(3740)), 'ERR_P2SN_UNEXPECTED_ERROR')
      expect((await client.request('still here')).toString()).to.equal('echo:still here')
    })

    it('maxMessageBlocks: a channel refuses to send a message its peer would refuse, before it goes out', async () => {
      const { server, client } = await overTcp({ keyPair: keys.s1024 }, { keyPair: keys.c1024 })
      const refused = new Promise<unknown>((resolve) => { server.once('clientError', resolve) })
      const failed = new Promise<P2snError>((resolve) => { client.once('error', resolve) })
      client.write(randomBytes(33 * 117))
      expect((await failed).code).to.equal('ERR_P2SN_MESSAGE_TOO_LONG')
      // The server saw no message of it: only the connection closing.
      expect(await Promise.race([refused, delay(300).then(() => 'nothing')])).not.to.have.property('code', 'ERR_P2SN_MESSAGE_TOO_LONG')
    })

    it('maxMessageBlocks must be a whole number of at least 1, checked before anything opens', () => {
      for (const value of [0, 1.5, -1, '3']) {
        expectP2snErrorSync(() => connect({ port: 1, maxMessageBlocks: value as number }), 'ERR_P2SN_INVALID_ARGUMENT')
      }
    })

    it('with strict: true, a server whose reply does not fit one block answers P2SN:UNEXPECTEDERROR, like the reference', async () => {
      const room = keys.c1024.publicKey.maxBlockPlaintext
      const { client } = await overTcp({
        keyPair: keys.s2048,
        strict: true,
        handler: (message) => message.toString() === 'long' ? Buffer.alloc(room + 1, 1) : message.toString() === 'fits' ? Buffer.alloc(room, 2) : 'ok'
      }, { keyPair: keys.c1024 })
      await expectP2snError(client.request('long'), 'ERR_P2SN_UNEXPECTED_ERROR')
      expect(await client.request('fits')).to.deep.equal(Buffer.alloc(room, 2))
      expect(String(await client.request('other'))).to.equal('ok')
      // On the wire it is the keyword itself, encrypted like a reply.
      const reply = once(client, 'data')
      client.write('long')
      expect(String((await reply)[0])).to.equal('P2SN:UNEXPECTEDERROR')
    })

    it('rejects pending and queued requests with ERR_P2SN_CLOSED when the server closes, and later ones at once', async () => {
      const { server, client } = await overTcp({ keyPair: keys.s1024, handler: () => new Promise<undefined>(() => {}) }, { keyPair: keys.c1024 })
      server.once('channel', (channel: Channel) => { channel.once('data', () => { setImmediate(() => channel.destroy()) }) })
      const pending = client.request('never answered')
      const queued = client.request('never sent')
      await expectP2snError(pending, 'ERR_P2SN_CLOSED')
      await expectP2snError(queued, 'ERR_P2SN_CLOSED')
      await expectP2snError(client.request('too late'), 'ERR_P2SN_CLOSED')
    })

    it('rejects with ERR_P2SN_CLOSED when the server ends its side, and at once after that', async () => {
      const { port } = await listen({ keyPair: keys.s1024 }, (channel) => { channel.once('data', () => { channel.end() }) })
      const client = track(connect({ port, keyPair: keys.c1024 }))
      await expectP2snError(client.request('ends it'), 'ERR_P2SN_CLOSED')
      await expectP2snError(within(1000, client.request('after the end'), 'rejecting a request after the peer\'s end'), 'ERR_P2SN_CLOSED')
    })

    it('refuses an engine object of one\'s own with pool or workers before opening anything: ERR_P2SN_INVALID_ARGUMENT', async () => {
      // The same functions as the built-in engine, but an object of one's own: it cannot cross threads.
      const engine: RsaEngine = { name: 'openssl', encryptBlock: opensslEngine.encryptBlock, decryptRaw: opensslEngine.decryptRaw }
      const pool = new RsaPool({ workers: 1 })
      try {
        expectP2snErrorSync(() => createServer({ keyPair: keys.s1024, engine, workers: 1 }), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => connect({ port: 1, keyPair: keys.c1024, engine, pool }), 'ERR_P2SN_INVALID_ARGUMENT')
        const socket = new net.Socket()
        expectP2snErrorSync(() => wrap(socket, { role: 'client', keyPair: keys.c1024, engine, workers: 1 }), 'ERR_P2SN_INVALID_ARGUMENT')
        expect(socket.destroyed, 'the stream given to wrap() is not left open').to.equal(true)
        // The built-in engine object itself is fine.
        createServer({ keyPair: keys.s1024, engine: opensslEngine, pool }).close()
      } finally {
        await pool.close()
      }
    })

    it('decrypts in an RsaPool\'s worker threads when given pool, on both sides, the key checks included', async () => {
      const pool = new RsaPool({ workers: 1 })
      try {
        const decrypt = pool.decrypt.bind(pool)
        let calls = 0
        pool.decrypt = (...args) => { calls++; return decrypt(...args) }
        const { client } = await overTcp({ keyPair: keys.s1024, pool }, { keyPair: keys.c1024, pool })
        const long = randomBytes(300)
        expect(await client.request('pooled')).to.deep.equal(echoOf('pooled'))
        expect(await client.request(long)).to.deep.equal(echoOf(long))
        expect(calls, 'each side\'s key check, two requests and two replies').to.equal(6)
      } finally {
        await pool.close()
      }
    })

    it('rejects with the error\'s code when the channel fails', async () => {
      const { client, raw } = await rawServerPair()
      const pending = client.request('hello')
      await once(raw, 'data')
      raw.write(Buffer.from('not base64!'))
      await expectP2snError(pending, 'ERR_P2SN_BAD_BASE64')
      await expectP2snError(client.request('after'), 'ERR_P2SN_CLOSED')
    })
  })

  /**
   * A client channel over the in-memory pair and, at the other end, a bare HandshakeDuplex as
   * the server: after the handshake, frames written to `raw` go out as they are (no Base64, no
   * RSA), so a test can send the client anything.
   */
  async function rawServerPair (clientOptions: Omit<WrapOptions, 'role' | 'keyPair'> = {}): Promise<{ client: Channel, raw: HandshakeDuplex, a: ChunkingPairEnd, b: ChunkingPairEnd }> {
    const [a, b] = duplexPair({ chunking: 'random', seed: 3 })
    const client = track(wrap(track(a), { ...clientOptions, role: 'client', keyPair: keys.c1024 }))
    const framed = new Pumpify.obj(new FrameJoiner(), track(b), new FrameSplitter())
    const raw = track(new HandshakeDuplex(framed as unknown as FrameTransport, { role: 'server', keyPair: keys.s1024 }))
    raw.on('error', () => {})
    await Promise.all([once(client, 'handshake'), once(raw, 'handshake')])
    return { client, raw, a, b }
  }

  describe('stream semantics', function () {
    it('each write is one message and each \'data\' one message, both ways', async () => {
      const [a, b] = duplexPair({ chunking: 'random', seed: 11 })
      const client = track(wrap(track(a), { role: 'client', keyPair: keys.c1024 }))
      const server = track(wrap(track(b), { role: 'server', keyPair: keys.s2048 }))
      const sent = [Buffer.from('one'), Buffer.alloc(0), Buffer.from('two'), randomBytes(600), Buffer.from([0x04, 0x04]), Buffer.from('three')]
      const serverGot = messagesOf(server)
      const clientGot = messagesOf(client)
      for (const message of sent) client.write(message)
      client.write('as text')
      client.write(new Uint8Array([1, 2, 3]))
      client.end()
      const atServer = await serverGot
      expect(atServer).to.deep.equal([...sent, Buffer.from('as text'), Buffer.from([1, 2, 3])])
      for (const message of [...atServer].reverse()) server.write(message)
      server.end()
      expect(await clientGot).to.deep.equal([...atServer].reverse())
    })

    it('delivers messages written before the handshake, in order', async () => {
      const { client, server } = overPair('byte', { keyPair: keys.c1024 }, { keyPair: keys.s1024 })
      const got = messagesOf(client)
      expect(client.handshake.handshakeComplete).to.equal(false)
      for (const m of ['first', 'second', 'third']) client.write(m)
      client.end()
      expect((await got).map(String)).to.deep.equal(['echo:first', 'echo:second', 'echo:third'])
      expect(server.handshake.handshakeComplete).to.equal(true)
    })

    /** Half-close: the client ends; the server sees its messages, then 'end', and still answers. */
    async function halfClose (client: Channel, server: Promise<Channel>): Promise<void> {
      const clientGot = messagesOf(client)
      const clientClosed = closed(client)
      client.write('question')
      client.end()
      const channel = await server
      const serverGot = await messagesOf(channel)
      expect(serverGot.map(String)).to.deep.equal(['question'])
      // Answer well after the client's end arrived.
      await delay(20)
      expect(channel.destroyed).to.equal(false)
      channel.write('answer 1')
      channel.end('answer 2')
      expect((await clientGot).map(String)).to.deep.equal(['answer 1', 'answer 2'])
      await clientClosed
      if (!channel.destroyed) await closed(channel)
    }

    it('end() half-closes over the in-memory pair: the other side sees \'end\' and can still write back', async () => {
      const [a, b] = duplexPair({ chunking: 'random', seed: 5 })
      const client = track(wrap(track(a), { role: 'client', keyPair: keys.c1024 }))
      const server = track(wrap(track(b), { role: 'server', keyPair: keys.s1024 }))
      await halfClose(client, Promise.resolve(server))
    })

    it('end() half-closes over TCP', async () => {
      const { server, port } = await listen({ keyPair: keys.s1024 })
      const channel = once(server, 'channel').then(([c]) => c as Channel)
      await halfClose(track(connect({ port, keyPair: keys.c1024 })), channel)
    })

    it('over TCP, a side that ends after its peer did closes its socket instead of shutting it down, with what the peer has not read yet, and the peer still gets all of it, then \'end\'', async () => {
      const { server, port } = await listen({ keyPair: keys.s1024 })
      const accepted = once(server.server, 'connection').then(([socket]) => socket as net.Socket)
      const serverChannel = once(server, 'channel').then(([c]) => c as Channel)
      const client = track(connect({ port, keyPair: keys.c1024 }))
      const clientErrors = errorsOf(client)
      const clientClosed = closed(client)
      client.end('go')
      const [socket, channel] = await Promise.all([accepted, serverChannel])
      let shutDown = false
      socket.on('finish', () => { shutDown = true })
      expect((await messagesOf(channel)).map(String)).to.deep.equal(['go'])
      // The client reads nothing for a while: the replies wait in the sockets' buffers (about
      // 70 KB, which they hold here) as the server closes its socket.
      client.pause()
      const replies = Array.from({ length: 200 }, (_, i) => Buffer.from(`reply ${i} `.padEnd(100, '.')))
      for (const reply of replies) channel.write(reply)
      channel.end()
      const serverClosed = closed(channel)
      await delay(100)
      const clientGot = messagesOf(client)
      client.resume()
      expect(await clientGot).to.deep.equal(replies)
      await Promise.all([clientClosed, serverClosed])
      expect(clientErrors).to.deep.equal([])
      // Closed, not shut down: the path under test was taken.
      expect(socket.destroyed).to.equal(true)
      expect(shutDown).to.equal(false)
    })

    it('runs over a stream that takes no new properties (Object.preventExtensions), and a throw while attaching leaves no timer behind', async () => {
      const [a, b] = duplexPair({ chunking: 'random', seed: 3 })
      const client = track(wrap(track(Object.preventExtensions(a)), { role: 'client', keyPair: keys.c1024 }))
      const server = track(wrap(track(Object.preventExtensions(b)), { role: 'server', keyPair: keys.s1024 }))
      const got = once(server, 'data')
      client.write('sealed')
      expect(String((await got)[0])).to.equal('sealed')
      // Not a stream at all: wrap() throws at once, and no handshake timer is left to fire.
      const baseline = await resourceBaseline()
      expect(() => wrap({ destroy () {} } as never, { role: 'client', keyPair: keys.c1024, handshakeTimeout: 50 })).to.throw(TypeError)
      await expectNoLeakedResources(baseline)
    })

    it('over a TCP socket given to wrap(), ends the socket (a shutdown) as before rather than closing it, so that its owner sees it finish', async () => {
      const tcp = net.createServer({ allowHalfOpen: true })
      const accepted = once(tcp, 'connection').then(([socket]) => socket as net.Socket)
      const client = track(connect({ port: await listenLocal(tcp), keyPair: keys.c1024 }))
      const socket = await accepted
      const socketDone = finished(socket)
      const channel = track(wrap(socket, { role: 'server', keyPair: keys.s1024 }))
      const clientGot = messagesOf(client)
      client.end('go')
      expect((await messagesOf(channel)).map(String)).to.deep.equal(['go'])
      channel.end('bye')
      expect((await clientGot).map(String)).to.deep.equal(['bye'])
      await socketDone
      expect(socket.writableFinished).to.equal(true)
      await new Promise((resolve) => tcp.close(resolve))
    })

    it('end() half-closes over TLS', async () => {
      const { server, port } = await listen({ keyPair: keys.s1024, tls: { key: TLS_KEY, cert: TLS_CERT } })
      const channel = once(server, 'channel').then(([c]) => c as Channel)
      await halfClose(track(connect({ port, keyPair: keys.c1024, tls: { ca: TLS_CERT, servername: 'localhost' } })), channel)
    })

    it('closes once both sides have ended, and reports writableEnded and readableEnded', async () => {
      const { client } = overPair('whole', { keyPair: keys.c1024 }, { keyPair: keys.s1024 })
      const got = messagesOf(client)
      expect(await client.request('x')).to.deep.equal(echoOf('x'))
      expect(client.writableEnded).to.equal(false)
      const done = closed(client)
      client.end()
      expect(client.writableEnded).to.equal(true)
      await got
      expect(client.readableEnded).to.equal(true)
      await done
    })

    it('destroy() is quiet and tears down the whole chain and the socket', async () => {
      const { server, port } = await listen({ keyPair: keys.s1024, handler: echoOf })
      const serverChannel = once(server, 'channel').then(([c]) => c as Channel)
      const socket = track(net.connect(port, '127.0.0.1'))
      const client = track(wrap(socket, { role: 'client', keyPair: keys.c1024 }))
      expect(String(await client.request('hi'))).to.equal('echo:hi')
      const errors = errorsOf(client)
      const peerClosed = closed(await serverChannel)
      const clientClosed = closed(client)
      client.destroy()
      await clientClosed
      await settle(5)
      expect(errors).to.deep.equal([])
      expect(client.destroyed).to.equal(true)
      expect(client.handshake.destroyed).to.equal(true)
      expect(socket.destroyed).to.equal(true)
      await peerClosed
      expect(server.connections).to.equal(0)
    })

    it('destroy() during the handshake is quiet and destroys the socket at once', async () => {
      // A server that accepts and never answers.
      const silent = net.createServer((socket) => { socket.on('error', () => {}); toDestroy.push(socket) })
      const port = await listenLocal(silent)
      try {
        const socket = track(net.connect(port, '127.0.0.1'))
        const client = track(wrap(socket, { role: 'client', keyPair: keys.c1024 }))
        const errors = errorsOf(client)
        await once(socket, 'connect')
        const socketClosed = closed(socket)
        client.destroy()
        // At once, not when the handshake times out (10 s).
        await within(1000, socketClosed, 'closing the socket')
        await settle(5)
        expect(errors).to.deep.equal([])
        expect(socket.destroyed).to.equal(true)
        expect(client.handshake.destroyed).to.equal(true)
      } finally {
        for (const stream of toDestroy) stream.destroy()
        await new Promise((resolve) => silent.close(resolve))
      }
    })

    it('destroy() over the in-memory pair closes both ends of the pair and the peer ends', async () => {
      const { client, server, a, b } = overPair('random', { keyPair: keys.c1024 }, { keyPair: keys.s1024 })
      await client.request('hi')
      const serverErrors = errorsOf(server)
      const serverEnded = once(server, 'end')
      client.destroy()
      await closed(a)
      await serverEnded
      await settle(5)
      expect(a.destroyed).to.equal(true)
      expect(serverErrors).to.deep.equal([])
      if (!server.destroyed) await closed(server)
      expect(b.destroyed).to.equal(true)
    })

    describe('a peer that breaks the protocol after the handshake: one error, with a code, then closed', function () {
      const cases: Array<{ name: string, code: P2snError['code'], send: (raw: HandshakeDuplex, b: ChunkingPairEnd) => void, options?: Omit<WrapOptions, 'role' | 'keyPair'> }> = [
        { name: 'a frame that is not Base64', code: 'ERR_P2SN_BAD_BASE64', send: (raw) => raw.write(Buffer.from('garbage!')) },
        { name: 'P2SN:ERRORKEY', code: 'ERR_P2SN_ERRORKEY', send: (raw) => raw.write(Buffer.from('P2SN:ERRORKEY')) },
        { name: 'a ciphertext that is not whole RSA blocks', code: 'ERR_P2SN_BAD_CIPHERTEXT', send: (raw) => raw.write(encodeBase64(Buffer.from('short'))) },
        { name: 'a frame longer than maxFrameLength', code: 'ERR_P2SN_FRAME_TOO_LONG', send: (raw) => raw.write(Buffer.alloc(9000, 'A')), options: { maxFrameLength: 8192, maxMessageBlocks: Infinity } },
        { name: 'a frame longer than a message of maxMessageBlocks blocks takes', code: 'ERR_P2SN_MESSAGE_TOO_LONG', send: (raw) => raw.write(Buffer.alloc(600, 'A')), options: { maxMessageBlocks: 2 } },
        { name: 'half a frame, then the end', code: 'ERR_P2SN_TRUNCATED', send: (_raw, b) => { b.end('QUJD') } }
      ]
      for (const { name, code, send, options } of cases) {
        it(`${name}: ${code}`, async () => {
          const { client, raw, a, b } = await rawServerPair(options)
          const errors = errorsOf(client)
          const done = closed(client)
          client.resume()
          send(raw, b)
          await done
          await settle(5)
          expect(errors).to.have.length(1)
          expect(errors[0]).to.be.an.instanceof(P2snError)
          expect((errors[0] as P2snError).code).to.equal(code)
          expect(client.handshake.destroyed).to.equal(true)
          expect(a.destroyed).to.equal(true)
        })
      }
    })
  })

  describe('backpressure', function () {
    it('stalls a writer whose reader is paused, accepting a bounded number of messages, then delivers them all in order', async () => {
      const [a, b] = duplexPair({ chunking: 'random', seed: 9 })
      const client = track(wrap(track(a), { role: 'client', keyPair: keys.c1024 }))
      const server = track(wrap(track(b), { role: 'server', keyPair: keys.s1024 }))
      await Promise.all([once(client, 'handshake'), once(server, 'handshake')])
      server.pause()
      const message = (i: number): Buffer => Buffer.from(`message ${String(i).padStart(6, '0')} `.padEnd(100, '.'))
      // Write while the writer accepts, then wait for 'drain'; stop when none comes.
      let written = 0
      const cap = 20000
      for (;;) {
        while (written < cap && client.write(message(written))) written++
        if (written >= cap) break
        written++ // the write that returned false was accepted too
        const drained = await within(150, once(client, 'drain'), '\'drain\'').then(() => true, () => false)
        if (!drained) break
      }
      const bytesBefore = a.bytesWritten
      await delay(50)
      // Nothing moves while the reader is paused, and little was taken in: each stage of both
      // chains holds a highWaterMark (MESSAGE_HIGH_WATER_MARK messages, or 16 KiB at the byte
      // level), 100-byte messages here, 174-byte frames on the wire. Without backpressure all
      // 20000 would go.
      expect(a.bytesWritten).to.equal(bytesBefore)
      expect(written).to.be.below(1000)
      expect(a.bytesWritten).to.be.below(6 * 16 * 1024)
      // A readable stream takes the chunk that crosses its highWaterMark, then refuses more: at
      // most one chunk (here at most one frame, 174 bytes) over it.
      expect(b.readableLength, 'the pair holds no more than its highWaterMark and one chunk').to.be.at.most(16 * 1024 + 174)
      // Reading again lets the writer go on; everything arrives, in order.
      const got: Buffer[] = []
      server.on('data', (m: Buffer) => { got.push(m) })
      server.resume()
      const more = 300
      for (let i = 0; i < more; i++) {
        if (!client.write(message(written + i))) await once(client, 'drain')
      }
      client.end()
      await once(server, 'end')
      expect(got.length).to.equal(written + more)
      got.forEach((m, i) => { if (!m.equals(message(i))) expect(String(m)).to.equal(String(message(i))) })
    })
  })

  describe('afterwards', function () {
    it('leaves no sockets, servers, pipes, child processes or timers open', async () => {
      await expectNoLeakedResources(baseline)
    })
  })
})
