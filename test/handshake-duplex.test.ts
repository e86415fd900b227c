import crypto from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import {
  decodeBase64, decryptMessage, encodeBase64, generateKeyPair, HandshakeDuplex, MAX_HANDSHAKE_FRAME_LENGTH, P2snError,
  parsePrivateKey, parsePublicKey, RsaPool,
  type FrameStep, type HandshakeOptions, type KeyPair, type P2snErrorCode, type PeerInfo, type PublicKey, type Role,
  type ServerKeyEncoding, type TraceEvent
} from '../lib/index.js'
import { CIPHERTEXT_CLASSES, ciphertextOf } from './helpers/ciphertext-classes.js'
import { expectP2snError } from './helpers/errors.js'
import { fixtureText } from './helpers/fixtures.js'
import { framePair, RecordingPairEnd, ScriptedPeer, TimerWatch } from './helpers/frame-pair.js'
import { settle } from './helpers/timing.js'

const PUBKEY = 'P2SN:PUBKEY'
const KEYCHECK = 'P2SN:KEYCHECK'
const ERRORKEY = 'P2SN:ERRORKEY'

/** A HandshakeDuplex under test, with everything it emitted and traced. */
interface Side {
  duplex: HandshakeDuplex
  transport: RecordingPairEnd
  errors: unknown[]
  trace: TraceEvent[]
  /** Resolves on 'close'. */
  closed: Promise<void>
  /** Resolves with the 'handshake' event's PeerInfo; rejects if the side closes first. */
  handshake: Promise<PeerInfo>
}

/** The frames' text, for readable comparisons. */
function texts (frames: Buffer[]): string[] {
  return frames.map((f) => f.toString('latin1'))
}

/** Base64 of RSA-PKCS1-v1_5(`plaintext`, `key`), made with node:crypto rather than the project's code. */
function keycheckFor (key: PublicKey, plaintext: string = KEYCHECK): Buffer {
  const ciphertext = crypto.publicEncrypt({ key: key.keyObject, padding: crypto.constants.RSA_PKCS1_PADDING }, Buffer.from(plaintext))
  return Buffer.from(ciphertext.toString('base64'))
}

/**
 * A key check encrypted to `other`, a key of the receiver's size, whose block is below the
 * receiver's modulus: so that it is decrypted (to garbage) rather than refused for its length or
 * size, and the test takes the path its label names.
 */
function keycheckForOther (other: PublicKey, receiver: PublicKey): Buffer {
  for (let i = 0; i < 200; i++) {
    const frame = keycheckFor(other)
    if (Buffer.from(frame.toString(), 'base64').compare(receiver.numbers.n) < 0) return frame
  }
  throw new Error('no ciphertext below the receiver\'s modulus in 200 tries')
}

describe('HandshakeDuplex', function () {
  // 1024-bit pairs for the scripted tests (ours, theirs, a stranger's); the size matrix adds 2048 and one 4096.
  let ours: KeyPair
  let theirs: KeyPair
  let other1024: KeyPair
  let other2048: KeyPair
  const keysOfSize = new Map<number, [KeyPair, KeyPair]>()
  let tiny: { pem: string, base64: Buffer }
  // The timers lib/ sets (the handshake timeout, the ERRORKEY linger), to find leaked ones.
  const timers = new TimerWatch(fileURLToPath(new URL('../lib/', import.meta.url)))

  before(async function () {
    const [a1024, b1024, c1024, a2048, b2048, c2048] = await Promise.all([
      generateKeyPair({ bits: 1024 }), generateKeyPair({ bits: 1024 }), generateKeyPair({ bits: 1024 }),
      generateKeyPair({ bits: 2048 }), generateKeyPair({ bits: 2048 }), generateKeyPair({ bits: 2048 })
    ])
    const only4096 = parsePrivateKey(fixtureText('implicit-rejection/k4096.pem'))
    ours = a1024
    theirs = b1024
    other1024 = c1024
    other2048 = c2048
    keysOfSize.set(1024, [a1024, b1024])
    keysOfSize.set(2048, [a2048, b2048])
    // One 4096-bit key (the fixture's: slow to make): a 4096/4096 handshake uses it on both sides.
    keysOfSize.set(4096, [only4096, only4096])
    const small = crypto.generateKeyPairSync('rsa', { modulusLength: 512 }).publicKey.export({ type: 'pkcs1', format: 'pem' }) as string
    tiny = { pem: small, base64: encodeBase64(Buffer.from(small)) }
  })

  before(function () {
    timers.enable()
  })

  after(function () {
    timers.disable()
  })

  beforeEach(function () {
    timers.reset()
  })

  /** Starts a HandshakeDuplex on `transport`, recording its errors and trace from the first moment. */
  function start (transport: RecordingPairEnd, options: HandshakeOptions): Side {
    const trace: TraceEvent[] = []
    const errors: unknown[] = []
    const duplex = new HandshakeDuplex(transport, { ...options, trace: (event) => { trace.push(event); options.trace?.(event) } })
    duplex.on('error', (err: unknown) => { errors.push(err) })
    const closed = new Promise<void>((resolve) => { duplex.on('close', () => { resolve() }) })
    const handshake = new Promise<PeerInfo>((resolve, reject) => {
      duplex.once('handshake', resolve)
      duplex.once('close', () => { reject(new Error(`closed before the handshake completed (errors: ${errors.map(String).join(', ')})`)) })
    })
    handshake.catch(() => {})
    return { duplex, transport, errors, trace, closed, handshake }
  }

  /** Asserts that no timer set by lib/ outlived the sides of this test. */
  async function expectNoLeakedTimers (): Promise<void> {
    expect(await timers.pending(), 'timers left running').to.deep.equal([])
  }

  /**
   * Waits for `side` to close and asserts that it emitted exactly one error, a P2snError with
   * `code`, before completing the handshake, and that it freed its transport and its timers.
   */
  async function expectFailure (side: Side, code: P2snErrorCode, { checkTimers = true, completed = false } = {}): Promise<P2snError> {
    await side.closed
    await settle()
    expect(side.errors, 'exactly one error event').to.have.length(1)
    const err = side.errors[0]
    expect(err).to.be.an.instanceof(P2snError)
    expect((err as P2snError).code, (err as Error).message).to.equal(code)
    expect(side.duplex.handshakeComplete).to.equal(completed)
    if (!completed) expect(side.duplex.remotePublicKey).to.equal(undefined)
    expect(side.transport.destroyed, 'the transport is destroyed').to.equal(true)
    // When another side of the test may still be running, the caller checks timers once it is done.
    if (checkTimers) await expectNoLeakedTimers()
    return err as P2snError
  }

  /** Asserts that the refusing side sent P2SN:ERRORKEY in plain, then closed, and failed with `code`. */
  async function expectRefusal (side: Side, peer: ScriptedPeer, code: P2snErrorCode): Promise<P2snError> {
    expect((await peer.read())?.toString('latin1'), 'P2SN:ERRORKEY in plain').to.equal(ERRORKEY)
    expect(await peer.read(), 'then the end of its stream').to.equal(null)
    const err = await expectFailure(side, code)
    expect(side.trace.at(-1)).to.deep.include({ direction: 'out', step: 'ERRORKEY' })
    expect(side.trace.at(-1)!.frame.toString('latin1')).to.equal(ERRORKEY)
    return err
  }

  /** Asserts that the side failed with `code` and sent nothing more: no P2SN:ERRORKEY in answer. */
  async function expectSilentFailure (side: Side, peer: ScriptedPeer, code: P2snErrorCode): Promise<P2snError> {
    expect(texts(await peer.rest()), 'no frame in answer').to.deep.equal([])
    const err = await expectFailure(side, code)
    expect(side.trace.filter((e) => e.direction === 'out' && e.step === 'ERRORKEY')).to.deep.equal([])
    return err
  }

  /** Our client against a scripted server, or our server against a scripted client. */
  function versusScript (role: Role, options: Partial<HandshakeOptions> = {}): { side: Side, peer: ScriptedPeer } {
    const [near, far] = framePair()
    const peer = new ScriptedPeer(far)
    const side = start(near, { role, keyPair: ours, ...options })
    return { side, peer }
  }

  /** Our client and our server over a frame pair. */
  function ourPair (clientOptions: Partial<HandshakeOptions> = {}, serverOptions: Partial<HandshakeOptions> = {}): { client: Side, server: Side } {
    const [a, b] = framePair()
    const client = start(a, { role: 'client', keyPair: ours, ...clientOptions })
    const server = start(b, { role: 'server', keyPair: theirs, ...serverOptions })
    return { client, server }
  }

  /**
   * Plays the server's side of steps 1 to `steps` against our client, with `theirs` as the
   * server key: 1 read PUBKEY, 2 send the key, 3 read and check the key check, 4 send PUBKEY,
   * 5 read the client key, 6 send the key check. Returns the client key, once read.
   */
  async function playServer (peer: ScriptedPeer, steps: number, encoding: ServerKeyEncoding = 'pem'): Promise<PublicKey | undefined> {
    let clientKey: PublicKey | undefined
    const pem = Buffer.from(theirs.publicKey.toPem())
    for (let step = 1; step <= steps; step++) {
      if (step === 1) expect((await peer.read())?.toString('latin1'), 'step 1').to.equal(PUBKEY)
      if (step === 2) peer.send(encoding === 'pem' ? pem : encodeBase64(pem))
      if (step === 3) {
        const frame = await peer.read()
        expect(frame, 'step 3').not.to.equal(null)
        expect(decryptMessage(theirs, decodeBase64(frame!), { rejection: 'error', strict: true }).toString('latin1')).to.equal(KEYCHECK)
      }
      if (step === 4) peer.send(PUBKEY)
      if (step === 5) {
        const frame = await peer.read()
        expect(frame, 'step 5').not.to.equal(null)
        clientKey = parsePublicKey(decodeBase64(frame!))
      }
      if (step === 6) peer.send(keycheckFor(clientKey!))
    }
    return clientKey
  }

  /**
   * Plays the client's side of steps 1 to `steps` against our server, with `theirs` as the
   * client key: 1 send PUBKEY, 2 read the server key, 3 send the key check, 4 read PUBKEY,
   * 5 send the client key, 6 read and check the key check. Returns the server key, once read.
   */
  async function playClient (peer: ScriptedPeer, steps: number): Promise<PublicKey | undefined> {
    let serverKey: PublicKey | undefined
    for (let step = 1; step <= steps; step++) {
      if (step === 1) peer.send(PUBKEY)
      if (step === 2) {
        const frame = await peer.read()
        expect(frame, 'step 2').not.to.equal(null)
        serverKey = parsePublicKey(decodeBase64(frame!))
      }
      if (step === 3) peer.send(keycheckFor(serverKey!))
      if (step === 4) expect((await peer.read())?.toString('latin1'), 'step 4').to.equal(PUBKEY)
      if (step === 5) peer.send(encodeBase64(Buffer.from(theirs.publicKey.toPem())))
      if (step === 6) {
        const frame = await peer.read()
        expect(frame, 'step 6').not.to.equal(null)
        expect(decryptMessage(theirs, decodeBase64(frame!), { rejection: 'error', strict: true }).toString('latin1')).to.equal(KEYCHECK)
      }
    }
    return serverKey
  }

  /** Collects the frames a side emits as 'data' and resolves once it ends. */
  function reader (side: Side): { frames: Buffer[], ended: Promise<void> } {
    const frames: Buffer[] = []
    const ended = new Promise<void>((resolve) => { side.duplex.on('end', () => { resolve() }) })
    side.duplex.on('data', (frame: Buffer) => { frames.push(frame) })
    return { frames, ended }
  }

  /** Ends both sides and waits for both to close without an error. */
  async function closeBoth (client: Side, server: Side): Promise<void> {
    client.duplex.resume()
    server.duplex.resume()
    client.duplex.end()
    server.duplex.end()
    await Promise.all([client.closed, server.closed])
    await settle()
    expect(client.errors).to.deep.equal([])
    expect(server.errors).to.deep.equal([])
    await expectNoLeakedTimers()
  }

  // The handshake steps as each side waits for them: a client receives 2, 4, 6, a server 1, 3, 5.
  const WAITS: Array<{ role: Role, step: number, name: FrameStep }> = [
    { role: 'server', step: 1, name: 'PUBKEY' },
    { role: 'client', step: 2, name: 'server key' },
    { role: 'server', step: 3, name: 'KEYCHECK' },
    { role: 'client', step: 4, name: 'PUBKEY' },
    { role: 'server', step: 5, name: 'client key' },
    { role: 'client', step: 6, name: 'KEYCHECK' }
  ]

  /** Our side of `role` against a script that has played the steps before `step`. */
  async function waitingAt (role: Role, step: number, options: Partial<HandshakeOptions> = {}): Promise<{ side: Side, peer: ScriptedPeer }> {
    const { side, peer } = versusScript(role, options)
    if (role === 'client') await playServer(peer, step - 1)
    else await playClient(peer, step - 1)
    return { side, peer }
  }

  describe('completing the handshake', function () {
    const SIZES = [1024, 2048, 4096]
    for (const serverBits of SIZES) {
      for (const clientBits of SIZES) {
        for (const encoding of ['base64', 'pem'] as const) {
          it(`a ${serverBits}-bit server and a ${clientBits}-bit client, the server key sent as ${encoding}`, async function () {
            const serverKeys = keysOfSize.get(serverBits)![0]
            const clientKeys = keysOfSize.get(clientBits)![1]
            const { client, server } = ourPair({ keyPair: clientKeys }, { keyPair: serverKeys, serverKeyEncoding: encoding })
            const [clientPeer, serverPeer] = await Promise.all([client.handshake, server.handshake])

            expect(clientPeer.publicKey.equals(serverKeys.publicKey), 'the client learned the server key').to.equal(true)
            expect(clientPeer.publicKey.bits).to.equal(serverBits)
            expect(clientPeer.fingerprint).to.equal(serverKeys.publicKey.fingerprint)
            expect(clientPeer.role).to.equal('client')
            expect(serverPeer.publicKey.equals(clientKeys.publicKey), 'the server learned the client key').to.equal(true)
            expect(serverPeer.fingerprint).to.equal(clientKeys.publicKey.fingerprint)
            expect(serverPeer.role).to.equal('server')
            expect(client.duplex.handshakeComplete && server.duplex.handshakeComplete).to.equal(true)
            expect(client.duplex.remoteFingerprint).to.equal(serverKeys.publicKey.fingerprint)
            expect(server.duplex.remotePublicKey?.equals(clientKeys.publicKey)).to.equal(true)
            expect(client.duplex.keyPair).to.equal(clientKeys)
            expect(server.duplex.role).to.equal('server')

            const pem = Buffer.from(serverKeys.publicKey.toPem())
            const step2 = server.trace.find((e) => e.step === 'server key')!.frame
            expect(step2.equals(encoding === 'pem' ? pem : encodeBase64(pem)), `step 2 is ${encoding}`).to.equal(true)

            const toServer = reader(server)
            const toClient = reader(client)
            client.duplex.write(Buffer.from('from the client'))
            server.duplex.write(Buffer.from('from the server'))
            await closeBoth(client, server)
            expect(texts(toServer.frames)).to.deep.equal(['from the client'])
            expect(texts(toClient.frames)).to.deep.equal(['from the server'])
          })
        }
      }
    }

    it('the client accepts an SPKI PEM and CRLF line ends for the server key', async function () {
      const spki = theirs.publicKey.keyObject.export({ type: 'spki', format: 'pem' }) as string
      for (const frame of [Buffer.from(spki), Buffer.from(theirs.publicKey.toPem().replace(/\n/g, '\r\n')), encodeBase64(Buffer.from(spki))]) {
        const { side, peer } = versusScript('client')
        await playServer(peer, 1)
        peer.send(frame)
        const keycheck = await peer.read()
        expect(decryptMessage(theirs, decodeBase64(keycheck!), { rejection: 'error' }).toString()).to.equal(KEYCHECK)
        peer.send(PUBKEY)
        const clientKey = parsePublicKey(decodeBase64((await peer.read())!))
        peer.send(keycheckFor(clientKey))
        expect((await side.handshake).publicKey.equals(theirs.publicKey)).to.equal(true)
        side.duplex.destroy()
        await side.closed
      }
      await expectNoLeakedTimers()
    })

    it('the server reads a client key sent as raw PEM as well as Base64', async function () {
      const { side, peer } = versusScript('server')
      await playClient(peer, 4)
      peer.send(theirs.publicKey.toPem())
      const keycheck = await peer.read()
      expect(decryptMessage(theirs, decodeBase64(keycheck!), { rejection: 'error' }).toString()).to.equal(KEYCHECK)
      expect((await side.handshake).publicKey.equals(theirs.publicKey)).to.equal(true)
      side.duplex.destroy()
      await side.closed
    })

    it('takes the key as PEM text, as a private key, or as a Promise of a key pair', async function () {
      const inputs = [ours.privateKey.toPem(), ours.privateKey, Promise.resolve(ours), Buffer.from(ours.privateKey.toPem())]
      for (const keyPair of inputs) {
        const { client, server } = ourPair({ keyPair })
        const peer = await server.handshake
        expect(peer.publicKey.equals(ours.publicKey)).to.equal(true)
        await client.handshake
        await closeBoth(client, server)
      }
    })

    it('generates a 2048-bit key pair when given none', async function () {
      const { client, server } = ourPair({ keyPair: undefined })
      const [, peer] = await Promise.all([client.handshake, server.handshake])
      expect(peer.publicKey.bits).to.equal(2048)
      expect(client.duplex.keyPair?.publicKey.equals(peer.publicKey)).to.equal(true)
      await closeBoth(client, server)
    })

    it('a key pair that fails to load fails the handshake with its own code', async function () {
      const { side, peer } = versusScript('client', { keyPair: Promise.reject(new P2snError('ERR_P2SN_BAD_KEY', 'no key')) })
      await expectSilentFailure(side, peer, 'ERR_P2SN_BAD_KEY')
    })
  })

  describe('frames around the handshake', function () {
    it('holds writes made before the handshake and sends them after it, in order', async function () {
      const { client, server } = ourPair()
      const events: string[] = []
      client.duplex.once('handshake', () => events.push('client handshake'))
      for (const text of ['one', 'two', 'three']) {
        client.duplex.write(Buffer.from(text), () => events.push(`written ${text}`))
      }
      server.duplex.write(Buffer.from('early from the server'))
      expect(events).to.deep.equal([])
      const toServer = reader(server)
      const toClient = reader(client)
      await Promise.all([client.handshake, server.handshake])
      await settle()
      expect(events).to.deep.equal(['client handshake', 'written one', 'written two', 'written three'])
      // Only message frames cross after the handshake: nothing leaked into it.
      expect(texts(client.trace.filter((e) => e.direction === 'out' && e.step === 'message').map((e) => e.frame))).to.deep.equal(['one', 'two', 'three'])
      await closeBoth(client, server)
      expect(texts(toServer.frames)).to.deep.equal(['one', 'two', 'three'])
      expect(texts(toClient.frames)).to.deep.equal(['early from the server'])
    })

    it('holds end() made before the handshake: the peer reads the frames, then the end', async function () {
      const { client, server } = ourPair()
      client.duplex.write(Buffer.from('last words'))
      client.duplex.end()
      const toServer = reader(server)
      await toServer.ended
      expect(texts(toServer.frames)).to.deep.equal(['last words'])
      await closeBoth(client, server)
    })

    it('delivers to a \'data\' listener attached before the handshake', async function () {
      const { client, server } = ourPair()
      const toServer = reader(server)
      const toClient = reader(client)
      await Promise.all([client.handshake, server.handshake])
      client.duplex.write(Buffer.from('ping'))
      server.duplex.write(Buffer.from('pong'))
      await closeBoth(client, server)
      expect(texts(toServer.frames)).to.deep.equal(['ping'])
      expect(texts(toClient.frames)).to.deep.equal(['pong'])
    })

    it('delivers a message that arrives right behind the last handshake frame, after \'handshake\'', async function () {
      const { side, peer } = versusScript('client')
      const events: string[] = []
      side.duplex.on('handshake', () => events.push('handshake'))
      side.duplex.on('data', (frame: Buffer) => events.push(`data ${frame.toString()}`))
      const clientKey = await playServer(peer, 5)
      peer.send(keycheckFor(clientKey!))
      peer.send('first message')
      peer.send('second message')
      await side.handshake
      await settle()
      expect(events).to.deep.equal(['handshake', 'data first message', 'data second message'])
      side.duplex.destroy()
      await side.closed
    })

    it('a reader that does not read holds the peer back; all frames arrive, in order, once it reads', async function () {
      const { client, server } = ourPair()
      await Promise.all([client.handshake, server.handshake])
      const sent = Array.from({ length: 200 }, (_, i) => `frame ${i}`)
      for (const text of sent) client.duplex.write(Buffer.from(text))
      await settle()
      expect(server.duplex.readableLength, 'buffered, not all taken in').to.be.at.most(server.duplex.readableHighWaterMark + 1)
      expect(server.transport.readableLength, 'the rest waits in the transport').to.be.greaterThan(0)
      const toServer = reader(server)
      await closeBoth(client, server)
      expect(texts(toServer.frames)).to.deep.equal(sent)
    })

    it('the end of the transport after the handshake ends the readable side', async function () {
      const { side, peer } = versusScript('client')
      await playServer(peer, 6)
      await side.handshake
      const got = reader(side)
      peer.send('bye')
      peer.hangUp()
      await got.ended
      expect(texts(got.frames)).to.deep.equal(['bye'])
      side.duplex.end()
      expect(await peer.read()).to.equal(null)
      await side.closed
      expect(side.errors).to.deep.equal([])
    })
  })

  describe('a bad key check is answered with P2SN:ERRORKEY, then ERR_P2SN_BAD_KEYCHECK', function () {
    const BAD_KEYCHECKS: Array<{ label: string, frame: (key: PublicKey) => Buffer }> = [
      { label: 'encrypted to another key of the same size', frame: (key) => keycheckForOther(other1024.publicKey, key) },
      { label: 'encrypted to another key of another size', frame: () => keycheckFor(other2048.publicKey) },
      { label: 'another plaintext encrypted to the right key', frame: (key) => keycheckFor(key, 'P2SN:KEYCHECX') },
      { label: 'a longer plaintext encrypted to the right key', frame: (key) => keycheckFor(key, 'P2SN:KEYCHECK!') },
      { label: 'P2SN:KEYCHECK in plain', frame: () => Buffer.from(KEYCHECK) },
      { label: 'Base64 of P2SN:KEYCHECK, unencrypted', frame: () => encodeBase64(Buffer.from(KEYCHECK)) },
      { label: 'an empty frame', frame: () => Buffer.alloc(0) }
    ]
    for (const bad of BAD_KEYCHECKS) {
      it(`at step 3, by our server: ${bad.label}`, async function () {
        const { side, peer } = await waitingAt('server', 3)
        peer.send(bad.frame(ours.publicKey))
        await expectRefusal(side, peer, 'ERR_P2SN_BAD_KEYCHECK')
      })

      it(`at step 6, by our client: ${bad.label}`, async function () {
        const { side, peer } = await waitingAt('client', 6)
        peer.send(bad.frame(ours.publicKey))
        await expectRefusal(side, peer, 'ERR_P2SN_BAD_KEYCHECK')
      })
    }
  })

  describe('pool: the key check decrypted in worker threads', function () {
    let pool: RsaPool
    /** The private keys the pool was asked to decrypt with, in order. */
    let used: KeyPair['privateKey'][]
    /** What each decryption asked of the pool and how many bytes it answered, in order. */
    let asked: Array<{ keyCheck: boolean | undefined, bytes: number }>

    before(function () {
      pool = new RsaPool({ workers: 1 })
      const decrypt = pool.decrypt.bind(pool)
      pool.decrypt = async (key, ciphertext, options) => {
        used.push(key)
        const answer = await decrypt(key, ciphertext, options)
        asked.push({ keyCheck: options?.keyCheck, bytes: answer.length })
        return answer
      }
    })

    after(async function () {
      await pool.close()
    })

    beforeEach(function () {
      used = []
      asked = []
    })

    it('each side decrypts its key check in the pool, once, before \'handshake\'', async function () {
      const { client, server } = ourPair({ pool }, { pool })
      // Whether each side's own key had gone through the pool by its 'handshake'.
      const before = { client: false, server: false }
      client.duplex.once('handshake', () => { before.client = used.includes(ours.privateKey) })
      server.duplex.once('handshake', () => { before.server = used.includes(theirs.privateKey) })
      await Promise.all([client.handshake, server.handshake])
      expect(used).to.have.members([ours.privateKey, theirs.privateKey])
      expect(before).to.deep.equal({ client: true, server: true })
      await closeBoth(client, server)
    })

    it('asks the pool only whether the block is P2SN:KEYCHECK (keyCheck): 13 bytes back for a good one, none for a bad one, on both sides', async function () {
      const { client, server } = ourPair({ pool }, { pool })
      await Promise.all([client.handshake, server.handshake])
      expect(asked).to.deep.equal([{ keyCheck: true, bytes: KEYCHECK.length }, { keyCheck: true, bytes: KEYCHECK.length }])
      await closeBoth(client, server)
      for (const [role, step] of [['server', 3], ['client', 6]] as const) {
        asked = []
        const { side, peer } = await waitingAt(role, step, { pool })
        peer.send(keycheckFor(ours.publicKey, 'P2SN:KEYCHECX'))
        await expectRefusal(side, peer, 'ERR_P2SN_BAD_KEYCHECK')
        expect(asked, `step ${step}`).to.deep.equal([{ keyCheck: true, bytes: 0 }])
      }
    })

    it('step 6 on the client, every class of ciphertext: only P2SN:KEYCHECK well padded completes; the rest get the same P2SN:ERRORKEY and ERR_P2SN_BAD_KEYCHECK', async function () {
      for (const cls of CIPHERTEXT_CLASSES) {
        for (const text of [KEYCHECK, 'P2SN:KEYCHECX', 'probe']) {
          const { side, peer } = await waitingAt('client', 6, { pool })
          peer.send(encodeBase64(ciphertextOf(cls, ours, Buffer.from(text))))
          if (cls === 'valid' && text === KEYCHECK) {
            await side.handshake
            side.duplex.destroy()
            await side.closed
          } else {
            await expectRefusal(side, peer, 'ERR_P2SN_BAD_KEYCHECK')
          }
        }
      }
      expect(asked.every((entry) => entry.keyCheck === true)).to.equal(true)
    })

    it('a bad key check at step 3 is still refused with P2SN:ERRORKEY: ERR_P2SN_BAD_KEYCHECK', async function () {
      const { side, peer } = await waitingAt('server', 3, { pool })
      peer.send(keycheckForOther(other1024.publicKey, ours.publicKey))
      await expectRefusal(side, peer, 'ERR_P2SN_BAD_KEYCHECK')
      expect(used).to.deep.equal([ours.privateKey])
    })

    it('a key check of the wrong length at step 6 is still refused with P2SN:ERRORKEY', async function () {
      const { side, peer } = await waitingAt('client', 6, { pool })
      peer.send(keycheckFor(other2048.publicKey))
      await expectRefusal(side, peer, 'ERR_P2SN_BAD_KEYCHECK')
    })

    it('destroy() while the key check waits for the pool cancels it: quiet, and nothing sent after', async function () {
      let signal: AbortSignal | undefined
      const stalled = { workers: 1, decrypt: async (_key: unknown, _ciphertext: unknown, options: { signal?: AbortSignal }) => {
        signal = options.signal
        return new Promise<Buffer>(() => {})
      } } as unknown as RsaPool
      const { side, peer } = await waitingAt('server', 3, { pool: stalled })
      peer.send(keycheckFor(ours.publicKey))
      await settle()
      expect(signal?.aborted, 'the key check reached the pool').to.equal(false)
      side.duplex.destroy()
      await side.closed
      expect(signal?.aborted, 'and was cancelled').to.equal(true)
      expect(side.errors).to.deep.equal([])
      expect(texts(await peer.rest()), 'nothing sent after step 2').to.deep.equal([])
      await expectNoLeakedTimers()
    })

    it('a full pool fails the handshake with ERR_P2SN_POOL_BUSY, without P2SN:ERRORKEY', async function () {
      const full = { workers: 1, decrypt: async () => Promise.reject(new P2snError('ERR_P2SN_POOL_BUSY', 'full')) } as unknown as RsaPool
      const { side, peer } = await waitingAt('server', 3, { pool: full })
      peer.send(keycheckFor(ours.publicKey))
      await expectSilentFailure(side, peer, 'ERR_P2SN_POOL_BUSY')
    })

    it('refuses an engine object of one\'s own with a pool at once: ERR_P2SN_INVALID_ARGUMENT', function () {
      const [near] = framePair()
      expect(() => new HandshakeDuplex(near, { role: 'server', keyPair: ours, pool, engine: { name: 'openssl', encryptBlock: () => Buffer.alloc(0), decryptRaw: () => Buffer.alloc(0) } }))
        .to.throw(P2snError).with.property('code', 'ERR_P2SN_INVALID_ARGUMENT')
    })

    it('a closed pool fails the handshake with ERR_P2SN_CLOSED, without blaming the peer', async function () {
      const closed = new RsaPool({ workers: 1 })
      await closed.close()
      const { side, peer } = await waitingAt('server', 3, { pool: closed })
      peer.send(keycheckFor(ours.publicKey))
      await expectSilentFailure(side, peer, 'ERR_P2SN_CLOSED')
    })
  })

  describe('refusing: P2SN:ERRORKEY first, then the error', function () {
    /**
     * A transport whose end() never completes, not even when destroyed, as the Pumpify chain of
     * wrap() (its 'finish' waits for the whole chain): a refusal's P2SN:ERRORKEY goes out but
     * never flushes.
     */
    class StuckEnd extends RecordingPairEnd {
      override end (chunk?: unknown): this {
        if (Buffer.isBuffer(chunk)) this.write(chunk)
        return this
      }
    }

    /** Our server on a stuck transport, after refusing a bad key check. */
    async function refusedOnStuckTransport (): Promise<{ side: Side, peer: ScriptedPeer, near: StuckEnd }> {
      const near = new StuckEnd(true)
      const far = new RecordingPairEnd(true)
      RecordingPairEnd.connect(near, far)
      const peer = new ScriptedPeer(far)
      const side = start(near, { role: 'server', keyPair: ours })
      await playClient(peer, 2)
      peer.send(keycheckForOther(other1024.publicKey, ours.publicKey))
      expect((await peer.read())?.toString()).to.equal(ERRORKEY)
      return { side, peer, near }
    }

    it('a transport that fails while the refusal flushes: still the refusal\'s code, and no timer left', async function () {
      const { side, near } = await refusedOnStuckTransport()
      near.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))
      await expectFailure(side, 'ERR_P2SN_BAD_KEYCHECK')
    })

    it('a refusal that never flushes fails after a second anyway', async function () {
      const { side } = await refusedOnStuckTransport()
      const started = Date.now()
      await expectFailure(side, 'ERR_P2SN_BAD_KEYCHECK')
      expect(Date.now() - started).to.be.within(800, 2000)
    })

    it('destroy() while the refusal flushes is quiet and leaves no timer', async function () {
      const { side } = await refusedOnStuckTransport()
      side.duplex.destroy()
      await side.closed
      await settle()
      expect(side.errors).to.deep.equal([])
      await expectNoLeakedTimers()
    })

    it('refuse() after the handshake: the frames already written, P2SN:ERRORKEY, the end; nothing more is read', async function () {
      const { side, peer } = versusScript('client')
      await playServer(peer, 6)
      await side.handshake
      const got = reader(side)
      side.duplex.write(Buffer.from('an answer already on its way'))
      await settle()
      const reason = new P2snError('ERR_P2SN_BAD_CIPHERTEXT', 'a 4-byte ciphertext')
      side.duplex.refuse(reason)
      side.duplex.refuse(new P2snError('ERR_P2SN_BAD_BASE64', 'a second refusal is not sent'))
      peer.send('not listened to')
      expect(texts(await peer.rest())).to.deep.equal(['an answer already on its way', ERRORKEY])
      const err = await expectFailure(side, 'ERR_P2SN_BAD_CIPHERTEXT', { completed: true })
      expect(err).to.equal(reason)
      expect(texts(got.frames)).to.deep.equal([])
      expect(side.trace.at(-1)).to.deep.include({ direction: 'out', step: 'ERRORKEY' })
    })

    it('refuse() after the handshake: the peer hanging up while it flushes does not end the stream without the error', async function () {
      const near = new StuckEnd(true)
      const far = new RecordingPairEnd(true)
      RecordingPairEnd.connect(near, far)
      const peer = new ScriptedPeer(far)
      const side = start(near, { role: 'client', keyPair: ours })
      await playServer(peer, 6)
      await side.handshake
      let ended = false
      side.duplex.on('end', () => { ended = true })
      side.duplex.resume()
      side.duplex.refuse(new P2snError('ERR_P2SN_BAD_BASE64', 'not base64'))
      expect((await peer.read())?.toString()).to.equal(ERRORKEY)
      peer.hangUp()
      await settle()
      expect(ended, 'no end for a refused peer').to.equal(false)
      expect(side.errors).to.deep.equal([])
      // The transport closes before the refusal could flush: the refusal is still the error.
      near.destroy()
      await expectFailure(side, 'ERR_P2SN_BAD_BASE64', { completed: true })
      expect(ended).to.equal(false)
    })

    it('refuse() during the handshake sends P2SN:ERRORKEY and stops it', async function () {
      const { side, peer } = await waitingAt('server', 3)
      side.duplex.refuse(new P2snError('ERR_P2SN_PEER_REJECTED', 'no'))
      peer.send(keycheckFor(ours.publicKey))
      await expectRefusal(side, peer, 'ERR_P2SN_PEER_REJECTED')
    })
  })

  describe('an unreadable key is answered with P2SN:ERRORKEY', function () {
    const BAD_KEYS: Array<{ label: string, frame: () => Buffer, code: P2snErrorCode }> = [
      { label: 'text that is neither PEM nor Base64', frame: () => Buffer.from('this is not a key!'), code: 'ERR_P2SN_BAD_KEY' },
      { label: 'a PEM block of garbage', frame: () => Buffer.from('-----BEGIN RSA PUBLIC KEY-----\nZ2FyYmFnZQ==\n-----END RSA PUBLIC KEY-----\n'), code: 'ERR_P2SN_BAD_KEY' },
      { label: 'Base64 of a PEM block of garbage', frame: () => encodeBase64(Buffer.from('-----BEGIN RSA PUBLIC KEY-----\nZ2FyYmFnZQ==\n-----END RSA PUBLIC KEY-----\n')), code: 'ERR_P2SN_BAD_KEY' },
      { label: 'Base64 of random bytes', frame: () => encodeBase64(crypto.randomBytes(300)), code: 'ERR_P2SN_BAD_KEY' },
      { label: 'an empty frame', frame: () => Buffer.alloc(0), code: 'ERR_P2SN_BAD_KEY' },
      { label: 'the PEM cut short', frame: () => Buffer.from(theirs.publicKey.toPem().slice(0, 100)), code: 'ERR_P2SN_BAD_KEY' },
      {
        label: 'an EC public key',
        frame: () => Buffer.from(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string),
        code: 'ERR_P2SN_BAD_KEY'
      },
      { label: 'a 512-bit RSA key as raw PEM', frame: () => Buffer.from(tiny.pem), code: 'ERR_P2SN_KEY_TOO_SMALL' },
      { label: 'a 512-bit RSA key as Base64 PEM', frame: () => tiny.base64, code: 'ERR_P2SN_KEY_TOO_SMALL' }
    ]
    for (const bad of BAD_KEYS) {
      it(`at step 2, by our client: ${bad.label} → ${bad.code}`, async function () {
        const { side, peer } = await waitingAt('client', 2)
        peer.send(bad.frame())
        await expectRefusal(side, peer, bad.code)
      })

      it(`at step 5, by our server: ${bad.label} → ${bad.code}`, async function () {
        const { side, peer } = await waitingAt('server', 5)
        peer.send(bad.frame())
        await expectRefusal(side, peer, bad.code)
      })
    }

    it('two clients: each takes the other\'s P2SN:PUBKEY for a key and refuses it', async function () {
      const [a, b] = framePair()
      const one = start(a, { role: 'client', keyPair: ours })
      const two = start(b, { role: 'client', keyPair: theirs })
      for (const side of [one, two]) {
        await expectFailure(side, 'ERR_P2SN_BAD_KEY', { checkTimers: side === two })
        expect(side.trace.map((e) => `${e.direction} ${e.step}`)).to.deep.equal(['out PUBKEY', 'in server key', 'out ERRORKEY'])
      }
    })
  })

  describe('P2SN:ERRORKEY from the peer fails with ERR_P2SN_ERRORKEY, unanswered', function () {
    for (const wait of WAITS) {
      it(`instead of step ${wait.step} (${wait.name}), received by our ${wait.role}`, async function () {
        const { side, peer } = await waitingAt(wait.role, wait.step)
        peer.send(ERRORKEY)
        await expectSilentFailure(side, peer, 'ERR_P2SN_ERRORKEY')
        expect(side.trace.at(-1)).to.deep.include({ direction: 'in', step: 'ERRORKEY' })
      })
    }

    for (const role of ['client', 'server'] as const) {
      it(`after the handshake, received by our ${role}`, async function () {
        const { client, server } = ourPair()
        await Promise.all([client.handshake, server.handshake])
        const [sender, receiver] = role === 'client' ? [server, client] : [client, server]
        const got = reader(receiver)
        sender.duplex.write(Buffer.from('a message first'))
        sender.duplex.write(Buffer.from(ERRORKEY))
        sender.duplex.write(Buffer.from('not delivered'))
        sender.duplex.resume()
        await expectFailure(receiver, 'ERR_P2SN_ERRORKEY', { completed: true })
        expect(texts(got.frames), 'ERRORKEY is not a message').to.deep.equal(['a message first'])
        expect(receiver.trace.at(-1)).to.deep.include({ direction: 'in', step: 'ERRORKEY' })
        // The sender is not told anything: it just sees the end of the stream.
        sender.duplex.end()
        await sender.closed
        expect(sender.errors).to.deep.equal([])
        await expectNoLeakedTimers()
      })
    }
  })

  describe('the peer hanging up during the handshake fails with ERR_P2SN_CLOSED', function () {
    for (const wait of WAITS) {
      it(`before step ${wait.step} (${wait.name}), seen by our ${wait.role}`, async function () {
        const { side, peer } = await waitingAt(wait.role, wait.step)
        peer.hangUp()
        const err = await expectSilentFailure(side, peer, 'ERR_P2SN_CLOSED')
        expect(err.message).to.include(wait.name)
      })
    }

    it('the transport closing without an end fails with ERR_P2SN_CLOSED', async function () {
      const { side, peer } = await waitingAt('server', 3)
      side.transport.destroy()
      await expectSilentFailure(side, peer, 'ERR_P2SN_CLOSED')
    })

    it('the transport failing fails with ERR_P2SN_CONNECTION, the cause kept', async function () {
      const { side, peer } = await waitingAt('client', 4)
      const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
      side.transport.destroy(reset)
      const err = await expectSilentFailure(side, peer, 'ERR_P2SN_CONNECTION')
      expect(err.cause).to.equal(reset)
    })
  })

  describe('handshakeTimeout', function () {
    for (const wait of WAITS) {
      it(`a peer that says nothing before step ${wait.step} (${wait.name}): our ${wait.role} fails with ERR_P2SN_HANDSHAKE_TIMEOUT`, async function () {
        const { side, peer } = await waitingAt(wait.role, wait.step, { handshakeTimeout: 40 })
        const err = await expectSilentFailure(side, peer, 'ERR_P2SN_HANDSHAKE_TIMEOUT')
        expect(err.message).to.include(`waiting for ${wait.name}`)
      })
    }

    it('two servers wait for each other until the timeout', async function () {
      const [a, b] = framePair()
      const one = start(a, { role: 'server', keyPair: ours, handshakeTimeout: 30 })
      const two = start(b, { role: 'server', keyPair: theirs, handshakeTimeout: 30 })
      await expectFailure(one, 'ERR_P2SN_HANDSHAKE_TIMEOUT', { checkTimers: false })
      await two.closed
      await settle()
      expect(two.errors).to.have.length(1)
      expect((two.errors[0] as P2snError).code).to.be.oneOf(['ERR_P2SN_HANDSHAKE_TIMEOUT', 'ERR_P2SN_CLOSED'])
      await expectNoLeakedTimers()
    })

    it('0 sets no timer; a completed handshake leaves none', async function () {
      const { side } = versusScript('server', { handshakeTimeout: 0 })
      expect(timers.created).to.equal(0)
      side.duplex.destroy()
      await side.closed
      const { client, server } = ourPair({ handshakeTimeout: 60_000 }, { handshakeTimeout: Infinity })
      expect(timers.created).to.equal(1)
      await Promise.all([client.handshake, server.handshake])
      await expectNoLeakedTimers()
      await closeBoth(client, server)
    })
  })

  describe('verifyPeer', function () {
    const REFUSALS: Array<{ label: string, verify: () => boolean | undefined | Promise<boolean | undefined>, cause: boolean }> = [
      { label: 'returns false', verify: () => false, cause: false },
      { label: 'resolves false', verify: async () => false, cause: false },
      { label: 'returns a rejected promise', verify: async () => { throw new Error('unknown fingerprint') }, cause: true },
      { label: 'throws', verify: () => { throw new Error('unknown fingerprint') }, cause: true }
    ]
    for (const role of ['client', 'server'] as const) {
      const peerRole = role === 'client' ? 'server' : 'client'
      for (const refusal of REFUSALS) {
        it(`our ${role}'s verifyPeer ${refusal.label}: ERR_P2SN_PEER_REJECTED; the ${peerRole} sees ERR_P2SN_CLOSED`, async function () {
          const seen: PeerInfo[] = []
          const verifyPeer = (info: PeerInfo): boolean | undefined | Promise<boolean | undefined> => { seen.push(info); return refusal.verify() }
          const { client, server } = role === 'client' ? ourPair({ verifyPeer }) : ourPair({}, { verifyPeer })
          const [judge, judged] = role === 'client' ? [client, server] : [server, client]
          const err = await expectFailure(judge, 'ERR_P2SN_PEER_REJECTED', { checkTimers: false })
          if (refusal.cause) expect((err.cause as Error).message).to.equal('unknown fingerprint')
          await expectFailure(judged, 'ERR_P2SN_CLOSED')
          expect(seen).to.have.length(1)
          const expected = role === 'client' ? theirs.publicKey : ours.publicKey
          expect(seen[0]!.publicKey.equals(expected)).to.equal(true)
          expect(seen[0]!.fingerprint).to.equal(expected.fingerprint)
          expect(seen[0]!.role).to.equal(role)
          expect(err.message).to.include(expected.fingerprint)
          // A refused peer is not told why: no P2SN:ERRORKEY, and no key check for it.
          expect(judge.trace.filter((e) => e.direction === 'out').map((e) => e.step)).to.deep.equal(role === 'client' ? ['PUBKEY'] : ['server key', 'PUBKEY'])
        })
      }

      for (const verdict of [true, undefined]) {
        it(`our ${role}'s verifyPeer resolving ${String(verdict)} lets the handshake complete`, async function () {
          let calls = 0
          const verifyPeer = async (): Promise<boolean | undefined> => { calls++; return verdict }
          const { client, server } = role === 'client' ? ourPair({ verifyPeer }) : ourPair({}, { verifyPeer })
          await Promise.all([client.handshake, server.handshake])
          expect(calls).to.equal(1)
          await closeBoth(client, server)
        })
      }
    }

    it('a verifyPeer still pending at the timeout: ERR_P2SN_HANDSHAKE_TIMEOUT, and nothing is sent after', async function () {
      let release: ((verdict: boolean) => void) | undefined
      const { side, peer } = await waitingAt('server', 5, {
        handshakeTimeout: 40,
        verifyPeer: () => new Promise<boolean>((resolve) => { release = resolve })
      })
      peer.send(encodeBase64(Buffer.from(theirs.publicKey.toPem())))
      await expectSilentFailure(side, peer, 'ERR_P2SN_HANDSHAKE_TIMEOUT')
      const traced = side.trace.length
      release!(true)
      await settle()
      expect(side.trace.slice(traced), 'no frame after the timeout').to.deep.equal([])
      expect(side.errors).to.have.length(1)
    })
  })

  describe('destroy() during the handshake', function () {
    for (const wait of WAITS) {
      it(`while our ${wait.role} waits for step ${wait.step} (${wait.name}): quiet, frees the transport, fails held writes`, async function () {
        const { side, peer } = await waitingAt(wait.role, wait.step)
        const writeErrors: unknown[] = []
        side.duplex.write(Buffer.from('held'), (err) => { writeErrors.push(err) })
        await settle()
        side.duplex.destroy()
        await side.closed
        await settle()
        expect(side.errors, 'no error event').to.deep.equal([])
        expect(side.transport.destroyed).to.equal(true)
        expect(await peer.read(), 'the peer sees the end').to.equal(null)
        expect(writeErrors).to.have.length(1)
        expect(writeErrors[0]).to.be.an.instanceof(P2snError)
        expect((writeErrors[0] as P2snError).code).to.equal('ERR_P2SN_CLOSED')
        expect(side.trace.filter((e) => e.direction === 'out' && e.step === 'message')).to.deep.equal([])
        await expectNoLeakedTimers()
      })
    }

    it('right after construction, before the key is loaded', async function () {
      const [near] = framePair()
      const side = start(near, { role: 'client', keyPair: ours })
      side.duplex.destroy()
      await side.closed
      await settle()
      expect(side.errors).to.deep.equal([])
      expect(side.trace, 'no frame sent').to.deep.equal([])
      expect(near.destroyed).to.equal(true)
      await expectNoLeakedTimers()
    })

    it('destroy(err) emits that error and no other', async function () {
      const { side, peer } = await waitingAt('client', 4)
      const reason = new P2snError('ERR_P2SN_PEER_REJECTED', 'changed our mind')
      side.duplex.destroy(reason)
      await expectSilentFailure(side, peer, 'ERR_P2SN_PEER_REJECTED')
      expect(side.errors[0]).to.equal(reason)
    })
  })

  describe('frames the handshake does not expect', function () {
    const tooLong = Buffer.alloc(MAX_HANDSHAKE_FRAME_LENGTH + 1, 0x41)
    for (const wait of WAITS.filter((w) => [1, 2, 5].includes(w.step))) {
      it(`a frame of ${tooLong.length} bytes at step ${wait.step} (${wait.name}): ERR_P2SN_FRAME_TOO_LONG`, async function () {
        const { side, peer } = await waitingAt(wait.role, wait.step)
        peer.send(tooLong)
        await expectSilentFailure(side, peer, 'ERR_P2SN_FRAME_TOO_LONG')
      })
    }

    it(`a key frame of exactly ${MAX_HANDSHAKE_FRAME_LENGTH} bytes is read (and refused as no key)`, async function () {
      const { side, peer } = await waitingAt('client', 2)
      peer.send(Buffer.alloc(MAX_HANDSHAKE_FRAME_LENGTH, 0x41))
      await expectRefusal(side, peer, 'ERR_P2SN_BAD_KEY')
    })

    const NOT_PUBKEY = ['P2SN:KEYCHECK', 'p2sn:pubkey', 'P2SN:PUBKEY ', ' P2SN:PUBKEY', 'P2SN:PUBKE', '', 'GET / HTTP/1.1']
    for (const frame of NOT_PUBKEY) {
      it(`${JSON.stringify(frame)} as the first frame to our server: ERR_P2SN_PROTOCOL`, async function () {
        const { side, peer } = versusScript('server')
        peer.send(frame)
        await expectSilentFailure(side, peer, 'ERR_P2SN_PROTOCOL')
      })
    }

    it('something else than P2SN:PUBKEY at step 4, to our client: ERR_P2SN_PROTOCOL', async function () {
      const { side, peer } = await waitingAt('client', 4)
      peer.send('P2SN:KEYCHECK')
      await expectSilentFailure(side, peer, 'ERR_P2SN_PROTOCOL')
    })

    it('our server fed all of a client\'s frames at once (pipelined) takes them in turn', async function () {
      const { side, peer } = versusScript('server')
      const got = reader(side)
      peer.send(PUBKEY)
      peer.send(keycheckFor(ours.publicKey))
      peer.send(encodeBase64(Buffer.from(theirs.publicKey.toPem())))
      peer.send('message 1')
      peer.send('message 2')
      peer.hangUp()
      await got.ended
      expect(texts(got.frames)).to.deep.equal(['message 1', 'message 2'])
      side.duplex.end()
      const answers = await peer.rest()
      expect(answers).to.have.length(3)
      expect(parsePublicKey(decodeBase64(answers[0]!)).equals(ours.publicKey)).to.equal(true)
      expect(answers[1]!.toString()).to.equal(PUBKEY)
      expect(decryptMessage(theirs, decodeBase64(answers[2]!), { rejection: 'error' }).toString()).to.equal(KEYCHECK)
      await side.closed
      expect(side.errors).to.deep.equal([])
    })
  })

  describe('options', function () {
    const INVALID: Array<{ label: string, options: Record<string, unknown> }> = [
      { label: 'role \'peer\'', options: { role: 'peer' } },
      { label: 'role left out', options: {} },
      { label: 'role \'CLIENT\'', options: { role: 'CLIENT' } },
      { label: 'serverKeyEncoding \'hex\'', options: { role: 'server', serverKeyEncoding: 'hex' } },
      { label: 'serverKeyEncoding \'PEM\'', options: { role: 'server', serverKeyEncoding: 'PEM' } },
      { label: 'handshakeTimeout -1', options: { role: 'client', handshakeTimeout: -1 } },
      { label: 'handshakeTimeout 1.5', options: { role: 'client', handshakeTimeout: 1.5 } },
      { label: 'handshakeTimeout NaN', options: { role: 'client', handshakeTimeout: NaN } },
      { label: 'handshakeTimeout \'100\'', options: { role: 'client', handshakeTimeout: '100' } },
      { label: 'handshakeTimeout -Infinity', options: { role: 'client', handshakeTimeout: -Infinity } }
    ]
    for (const invalid of INVALID) {
      it(`${invalid.label}: throws ERR_P2SN_INVALID_ARGUMENT and touches nothing`, async function () {
        const [near] = framePair()
        await expectP2snError(() => new HandshakeDuplex(near, { keyPair: ours, ...invalid.options } as unknown as HandshakeOptions), 'ERR_P2SN_INVALID_ARGUMENT')
        expect(near.listenerCount('data')).to.equal(0)
        expect(near.destroyed).to.equal(false)
        expect(near.written).to.deep.equal([])
        expect(timers.created).to.equal(0)
      })
    }

    it('a key that cannot be read throws ERR_P2SN_BAD_KEY and touches nothing', async function () {
      const [near] = framePair()
      await expectP2snError(() => new HandshakeDuplex(near, { role: 'client', keyPair: 'not a key' }), 'ERR_P2SN_BAD_KEY')
      expect(near.listenerCount('data')).to.equal(0)
      expect(timers.created).to.equal(0)
    })
  })

  describe('trace', function () {
    it('sees every frame, in order, with the step names, on both sides', async function () {
      const { client, server } = ourPair()
      await Promise.all([client.handshake, server.handshake])
      const toServer = reader(server)
      const toClient = reader(client)
      client.duplex.write(Buffer.from('ping'))
      await settle()
      server.duplex.write(Buffer.from('pong'))
      await closeBoth(client, server)
      expect(texts(toServer.frames)).to.deep.equal(['ping'])
      expect(texts(toClient.frames)).to.deep.equal(['pong'])

      expect(client.trace.map((e) => `${e.direction} ${e.step}`)).to.deep.equal([
        'out PUBKEY', 'in server key', 'out KEYCHECK', 'in PUBKEY', 'out client key', 'in KEYCHECK', 'out message', 'in message'
      ])
      expect(server.trace.map((e) => `${e.direction} ${e.step}`)).to.deep.equal([
        'in PUBKEY', 'out server key', 'in KEYCHECK', 'out PUBKEY', 'in client key', 'out KEYCHECK', 'in message', 'out message'
      ])
      // What one side traced as sent, the other traced as received, byte for byte.
      const frames = (side: Side, direction: 'in' | 'out'): string[] => side.trace.filter((e) => e.direction === direction).map((e) => e.frame.toString('latin1'))
      expect(frames(server, 'in')).to.deep.equal(frames(client, 'out'))
      expect(frames(client, 'in')).to.deep.equal(frames(server, 'out'))
      const byStep = (side: Side, step: FrameStep): string[] => side.trace.filter((e) => e.step === step).map((e) => e.frame.toString('latin1'))
      expect(byStep(client, 'PUBKEY')).to.deep.equal([PUBKEY, PUBKEY])
      expect(byStep(client, 'server key')).to.deep.equal([encodeBase64(Buffer.from(theirs.publicKey.toPem())).toString()])
      expect(byStep(client, 'client key')).to.deep.equal([encodeBase64(Buffer.from(ours.publicKey.toPem())).toString()])
      const [outCheck, inCheck] = byStep(client, 'KEYCHECK')
      expect(decryptMessage(theirs, decodeBase64(outCheck!), { rejection: 'error' }).toString()).to.equal(KEYCHECK)
      expect(decryptMessage(ours, decodeBase64(inCheck!), { rejection: 'error' }).toString()).to.equal(KEYCHECK)
      expect(byStep(client, 'message')).to.deep.equal(['ping', 'pong'])
    })
  })
})
