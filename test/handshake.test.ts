/**
 * The handshake as a state machine, driven frame by frame with no streams, timers or sockets:
 * our two roles wired to each other, each role against the recorded Python sessions, and every
 * way the handshake can fail.
 */
import crypto from 'node:crypto'
import { expect } from 'chai'
import {
  answersWithErrorKey, ERRORKEY, errorKeyReceived, HandshakeMachine, PUBKEY, refusal,
  type FrameStep, type HandshakeOutput, type Role, type ServerKeyEncoding
} from '../lib/core/handshake.js'
import { decodeBase64, encodeBase64 } from '../lib/core/base64.js'
import { decryptMessage } from '../lib/core/rsa-message.js'
import {
  generateKeyPair, MAX_HANDSHAKE_FRAME_LENGTH, P2snError, parsePrivateKey, parsePublicKey,
  type KeyPair, type P2snErrorCode, type PublicKey
} from '../lib/index.js'
import { expectP2snErrorSync, thrown } from './helpers/errors.js'
import { loadSessions, RECORDED_SESSION_NAMES } from './helpers/fixtures.js'

const KEYCHECK = 'P2SN:KEYCHECK'
const EOT = 0x04

/** What a machine waiting at each protocol step (1 to 6) expects. */
const STEP_NAMES: Record<number, FrameStep> = { 1: 'PUBKEY', 2: 'server key', 3: 'KEYCHECK', 4: 'PUBKEY', 5: 'client key', 6: 'KEYCHECK' }

/** The fields of an output that are set, sorted: `send` and at most one of the others. */
function fields (output: HandshakeOutput): string[] {
  return Object.entries(output).filter(([, value]) => value !== undefined).map(([name]) => name).sort()
}

/** The text of each frame to send, and its step name. */
function sent (output: HandshakeOutput): Array<[string, FrameStep]> {
  return output.send.map(({ frame, step }) => [frame.toString('latin1'), step])
}

/** What a Base64 key check frame decrypts to under `keys`: one RSA block of that key, strictly. */
function openKeycheck (keys: KeyPair, frame: Buffer): string {
  const ciphertext = decodeBase64(frame)
  expect(ciphertext.length, 'one rsa block of the receiver\'s key').to.equal(keys.publicKey.size)
  return decryptMessage(keys, ciphertext, { strict: true }).toString('latin1')
}

/** Base64 of RSA-PKCS1-v1_5(`plaintext`, `key`), made with node:crypto rather than the project's code. */
function keycheckFor (key: PublicKey, plaintext: string | Buffer = KEYCHECK): Buffer {
  const ciphertext = crypto.publicEncrypt({ key: key.keyObject, padding: crypto.constants.RSA_PKCS1_PADDING }, Buffer.from(plaintext))
  return Buffer.from(ciphertext.toString('base64'), 'latin1')
}

/**
 * A key check encrypted to `other` whose ciphertext is below `receiver`'s modulus, so that the
 * receiver decrypts it (to garbage) instead of refusing it for its value: made until one is.
 */
function keycheckForOther (other: PublicKey, receiver: PublicKey): Buffer {
  for (let i = 0; i < 200; i++) {
    const frame = keycheckFor(other)
    if (decodeBase64(frame).compare(receiver.numbers.n) < 0) return frame
  }
  throw new Error('no ciphertext below the receiver\'s modulus in 200 tries')
}

/** A key frame as a server sends it at step 2 (raw or Base64 PEM) or a client at step 5 (Base64). */
function keyFrame (key: PublicKey, encoding: ServerKeyEncoding = 'base64'): Buffer {
  const pem = Buffer.from(key.toPem(), 'latin1')
  return encoding === 'pem' ? pem : Buffer.from(pem.toString('base64'), 'latin1')
}

/** Does what a `decrypt` output asks, as the shells do: strictly, `keyCheckFailed` on an error. */
function answerDecrypt (machine: HandshakeMachine, keys: KeyPair, ciphertext: Buffer): HandshakeOutput {
  let plaintext: Buffer
  try {
    plaintext = decryptMessage(keys, ciphertext, { strict: true })
  } catch (err) {
    return machine.keyCheckFailed(err)
  }
  return machine.keyChecked(plaintext)
}

/** Feeds `frame`, and answers a `decrypt` the machine asks for with `keys`. */
function feed (machine: HandshakeMachine, keys: KeyPair, frame: Buffer): HandshakeOutput {
  const output = machine.receive(frame)
  return output.decrypt === undefined ? output : answerDecrypt(machine, keys, output.decrypt)
}

/** Asserts that `fn` throws a P2snError `code`, answered with `P2SN:ERRORKEY` or not. */
function expectFailure (fn: () => unknown, code: P2snErrorCode, answered: boolean): P2snError {
  const err = expectP2snErrorSync(fn, code)
  expect(answersWithErrorKey(err), `answersWithErrorKey of ${code}`).to.equal(answered)
  return err
}

/** Asserts where a machine is: the frame it expects (none while it waits for its caller), the step it names, and not done. */
function expectAt (machine: HandshakeMachine, expecting: FrameStep | undefined, step: FrameStep): void {
  expect(machine.expecting, 'expecting').to.equal(expecting)
  expect(machine.step, 'step').to.equal(step)
  expect(machine.done, 'done').to.equal(false)
}

/** Asserts that the machine is spent: not done, expecting nothing, and every method refused. */
function expectSpent (machine: HandshakeMachine): void {
  expect(machine.done, 'done').to.equal(false)
  expect(machine.expecting, 'expecting').to.equal(undefined)
  expectFailure(() => machine.receive(PUBKEY), 'ERR_P2SN_INVALID_ARGUMENT', false)
  expectFailure(() => machine.receive(Buffer.from(KEYCHECK)), 'ERR_P2SN_INVALID_ARGUMENT', false)
  expectFailure(() => machine.keyChecked(Buffer.from(KEYCHECK)), 'ERR_P2SN_INVALID_ARGUMENT', false)
  expectFailure(() => machine.keyCheckFailed(new Error('late')), 'ERR_P2SN_INVALID_ARGUMENT', false)
  expectFailure(() => machine.accepted(), 'ERR_P2SN_INVALID_ARGUMENT', false)
  expectFailure(() => machine.start(), 'ERR_P2SN_INVALID_ARGUMENT', false)
  expect(machine.done, 'still not done').to.equal(false)
}

/** A hand-made TLS 1.2/1.3 ClientHello record: what a client of the authenticated mode sends first. */
function clientHello (recordVersion = 0x01): Buffer {
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]), // client_version
    Buffer.alloc(32, 0x5a), // random
    Buffer.from([0x00]), // no session id
    Buffer.from([0x00, 0x02, 0x13, 0x01]), // one cipher suite: TLS_AES_128_GCM_SHA256
    Buffer.from([0x01, 0x00]), // compression: null
    Buffer.from([0x00, 0x00]) // no extensions
  ])
  const handshake = Buffer.concat([Buffer.from([0x01, 0x00, 0x00, body.length]), body])
  return Buffer.concat([Buffer.from([0x16, 0x03, recordVersion, 0x00, handshake.length]), handshake])
}

describe('HandshakeMachine', function () {
  let client1024: KeyPair
  let server1024: KeyPair
  let client2048: KeyPair
  let server2048: KeyPair
  let other1024: KeyPair
  /** A 512-bit RSA public key as PKCS#1 PEM: below the protocol's floor. */
  let tinyPem: string
  /** A 1024-bit RSA public key with the exponent 1, as PKCS#1 PEM. */
  let exponentOnePem: string

  before(async function () {
    [client1024, server1024, client2048, server2048, other1024] = await Promise.all([
      generateKeyPair({ bits: 1024 }), generateKeyPair({ bits: 1024 }),
      generateKeyPair({ bits: 2048 }), generateKeyPair({ bits: 2048 }), generateKeyPair({ bits: 1024 })
    ])
    tinyPem = crypto.generateKeyPairSync('rsa', { modulusLength: 512 }).publicKey.export({ type: 'pkcs1', format: 'pem' }) as string
    const jwk = client1024.publicKey.keyObject.export({ format: 'jwk' })
    exponentOnePem = crypto.createPublicKey({ key: { ...jwk, e: 'AQ' }, format: 'jwk' }).export({ type: 'pkcs1', format: 'pem' }) as string
  })

  /** A machine started and fed valid frames until it waits for the frame of `step` (1 to 6). */
  function waitingAt (step: number, keys: { client: KeyPair, server: KeyPair } = { client: client1024, server: server1024 }): HandshakeMachine {
    const role: Role = step % 2 === 0 ? 'client' : 'server'
    const machine = new HandshakeMachine(role, role === 'client' ? keys.client : keys.server)
    machine.start()
    if (role === 'client') {
      if (step >= 4) {
        machine.receive(keyFrame(keys.server.publicKey))
        machine.accepted()
      }
      if (step >= 6) machine.receive(PUBKEY)
    } else {
      if (step >= 3) machine.receive(PUBKEY)
      if (step >= 5) feed(machine, keys.server, keycheckFor(keys.server.publicKey))
    }
    expect(machine.expecting, `waiting at step ${step}`).to.equal(STEP_NAMES[step])
    return machine
  }

  describe('the exported helpers', function () {
    it('PUBKEY and ERRORKEY are the keywords\' bytes', function () {
      expect(PUBKEY.toString('latin1')).to.equal('P2SN:PUBKEY')
      expect(ERRORKEY.toString('latin1')).to.equal('P2SN:ERRORKEY')
    })

    it('errorKeyReceived() is ERR_P2SN_ERRORKEY, not answered with P2SN:ERRORKEY', function () {
      const err = errorKeyReceived()
      expect(err).to.be.an.instanceof(P2snError)
      expect(err.code).to.equal('ERR_P2SN_ERRORKEY')
      expect(answersWithErrorKey(err)).to.equal(false)
    })

    it('refusal() marks an error to answer with P2SN:ERRORKEY and returns it; nothing else is marked', function () {
      const plain = new P2snError('ERR_P2SN_BAD_KEY', 'x')
      const other = new Error('y')
      expect(answersWithErrorKey(plain)).to.equal(false)
      expect(answersWithErrorKey(other)).to.equal(false)
      expect(refusal(plain)).to.equal(plain)
      expect(answersWithErrorKey(plain)).to.equal(true)
      expect(answersWithErrorKey(other)).to.equal(false)
    })
  })

  describe('our client and our server wired to each other, frame by frame', function () {
    const SIZES = [
      { client: 1024, server: 1024 },
      { client: 2048, server: 2048 },
      { client: 1024, server: 2048 },
      { client: 2048, server: 1024 }
    ]
    for (const sizes of SIZES) {
      for (const encoding of ['base64', 'pem'] as const) {
        it(`client ${sizes.client} bits, server ${sizes.server} bits, server key as ${encoding}: every output, step by step`, function () {
          const clientKeys = sizes.client === 1024 ? client1024 : client2048
          const serverKeys = sizes.server === 1024 ? server1024 : server2048
          const client = new HandshakeMachine('client', clientKeys)
          const server = new HandshakeMachine('server', serverKeys, { serverKeyEncoding: encoding })
          expect(client.role).to.equal('client')
          expect(server.role).to.equal('server')

          // The server opens by waiting for step 1.
          const s0 = server.start()
          expect(fields(s0)).to.deep.equal(['send'])
          expect(s0.send).to.deep.equal([])
          expectAt(server, 'PUBKEY', 'PUBKEY')

          // Step 1: the client asks for the server's key.
          const c1 = client.start()
          expect(fields(c1)).to.deep.equal(['send'])
          expect(sent(c1)).to.deep.equal([['P2SN:PUBKEY', 'PUBKEY']])
          expectAt(client, 'server key', 'server key')

          // Step 2: the server's key, raw PEM or Base64 PEM.
          const s2 = server.receive(c1.send[0]!.frame)
          expect(fields(s2)).to.deep.equal(['send'])
          const pem = serverKeys.publicKey.toPem()
          expect(pem.startsWith('-----BEGIN RSA PUBLIC KEY-----\n')).to.equal(true)
          expect(sent(s2)).to.deep.equal([[encoding === 'pem' ? pem : Buffer.from(pem).toString('base64'), 'server key']])
          expectAt(server, 'KEYCHECK', 'KEYCHECK')

          // The client judges the server's key before it encrypts to it.
          const c2 = client.receive(s2.send[0]!.frame)
          expect(fields(c2)).to.deep.equal(['send', 'verify'])
          expect(c2.send).to.deep.equal([])
          expect(c2.verify!.equals(serverKeys.publicKey)).to.equal(true)
          expectAt(client, undefined, 'server key')

          // Step 3: P2SN:KEYCHECK encrypted to the server's key.
          const c3 = client.accepted()
          expect(fields(c3)).to.deep.equal(['send'])
          expect(c3.send.map((s) => s.step)).to.deep.equal(['KEYCHECK'])
          expect(openKeycheck(serverKeys, c3.send[0]!.frame)).to.equal(KEYCHECK)
          expectAt(client, 'PUBKEY', 'PUBKEY')

          // The server asks for the key check to be decrypted.
          const s3 = server.receive(c3.send[0]!.frame)
          expect(fields(s3)).to.deep.equal(['decrypt', 'send'])
          expect(s3.send).to.deep.equal([])
          expect(s3.decrypt!.equals(decodeBase64(c3.send[0]!.frame))).to.equal(true)
          expectAt(server, undefined, 'KEYCHECK')

          // Step 4: it checks out, so the server asks for the client's key.
          const s4 = server.keyChecked(decryptMessage(serverKeys, s3.decrypt!, { strict: true }))
          expect(fields(s4)).to.deep.equal(['send'])
          expect(sent(s4)).to.deep.equal([['P2SN:PUBKEY', 'PUBKEY']])
          expectAt(server, 'client key', 'client key')

          // Step 5: the client's key, always Base64 PEM.
          const c5 = client.receive(s4.send[0]!.frame)
          expect(fields(c5)).to.deep.equal(['send'])
          expect(sent(c5)).to.deep.equal([[Buffer.from(clientKeys.publicKey.toPem()).toString('base64'), 'client key']])
          expectAt(client, 'KEYCHECK', 'KEYCHECK')

          // The server judges the client's key.
          const s5 = server.receive(c5.send[0]!.frame)
          expect(fields(s5)).to.deep.equal(['send', 'verify'])
          expect(s5.send).to.deep.equal([])
          expect(s5.verify!.equals(clientKeys.publicKey)).to.equal(true)
          expectAt(server, undefined, 'client key')

          // Step 6: P2SN:KEYCHECK encrypted to the client's key, and the server is done.
          const s6 = server.accepted()
          expect(fields(s6)).to.deep.equal(['done', 'send'])
          expect(s6.send.map((s) => s.step)).to.deep.equal(['KEYCHECK'])
          expect(openKeycheck(clientKeys, s6.send[0]!.frame)).to.equal(KEYCHECK)
          expect(s6.done!.equals(clientKeys.publicKey)).to.equal(true)
          expect(s6.done).to.equal(s5.verify)
          expect(server.done).to.equal(true)
          expect(server.expecting).to.equal(undefined)

          // The client decrypts the last key check and is done.
          const c6 = client.receive(s6.send[0]!.frame)
          expect(fields(c6)).to.deep.equal(['decrypt', 'send'])
          expect(c6.send).to.deep.equal([])
          expect(c6.decrypt!.equals(decodeBase64(s6.send[0]!.frame))).to.equal(true)
          expect(client.expecting).to.equal(undefined)
          expect(client.done).to.equal(false)
          const c7 = client.keyChecked(decryptMessage(clientKeys, c6.decrypt!, { strict: true }))
          expect(fields(c7)).to.deep.equal(['done', 'send'])
          expect(c7.send).to.deep.equal([])
          expect(c7.done!.equals(serverKeys.publicKey)).to.equal(true)
          expect(c7.done).to.equal(c2.verify)
          expect(client.done).to.equal(true)
          expect(client.expecting).to.equal(undefined)
        })
      }
    }

    it('sends a fresh key check each time (PKCS#1 v1.5 is randomized) and the same key frames', function () {
      const run = (): { step2: Buffer, step3: Buffer, step5: Buffer, step6: Buffer } => {
        const client = new HandshakeMachine('client', client1024)
        const server = new HandshakeMachine('server', server1024)
        server.start()
        const step2 = server.receive(client.start().send[0]!.frame).send[0]!.frame
        client.receive(step2)
        const step3 = client.accepted().send[0]!.frame
        const step4 = answerDecrypt(server, server1024, server.receive(step3).decrypt!).send[0]!.frame
        const step5 = client.receive(step4).send[0]!.frame
        server.receive(step5)
        const step6 = server.accepted().send[0]!.frame
        expect(answerDecrypt(client, client1024, client.receive(step6).decrypt!).done!.equals(server1024.publicKey)).to.equal(true)
        return { step2, step3, step5, step6 }
      }
      const a = run()
      const b = run()
      expect(a.step2.equals(b.step2)).to.equal(true)
      expect(a.step5.equals(b.step5)).to.equal(true)
      expect(a.step3.equals(b.step3), 'step 3 differs').to.equal(false)
      expect(a.step6.equals(b.step6), 'step 6 differs').to.equal(false)
    })

    it('the server also reads a client key sent as raw PEM at step 5', function () {
      const server = waitingAt(5)
      const out = server.receive(keyFrame(client2048.publicKey, 'pem'))
      expect(out.verify!.equals(client2048.publicKey)).to.equal(true)
      expect(openKeycheck(client2048, server.accepted().send[0]!.frame)).to.equal(KEYCHECK)
    })

    it('serverKeyEncoding is the server\'s only: a client always sends Base64 PEM at step 5', function () {
      const client = new HandshakeMachine('client', client1024, { serverKeyEncoding: 'pem' })
      client.start()
      client.receive(keyFrame(server1024.publicKey))
      client.accepted()
      expect(sent(client.receive(PUBKEY))).to.deep.equal([[keyFrame(client1024.publicKey).toString('latin1'), 'client key']])
    })
  })

  describe('the recorded Python sessions, played into our machines', function () {
    const sessions = loadSessions()

    it('finds all six recordings', function () {
      expect(sessions.map((s) => s.name)).to.deep.equal(RECORDED_SESSION_NAMES)
    })

    for (const session of sessions) {
      describe(`${session.name}: ${session.description}`, function () {
        let server: KeyPair
        let client: KeyPair

        /** The recorded frame `i` without its terminator. */
        function body (i: number): Buffer {
          const frame = session.wire[i]!.bytes
          expect(frame[frame.length - 1], `recorded frame ${i} ends with 0x04`).to.equal(EOT)
          expect(frame.subarray(0, -1).includes(EOT), `recorded frame ${i} holds one frame`).to.equal(false)
          return frame.subarray(0, -1)
        }

        /** A frame of ours as the recording would hold it. */
        function framed (frame: Buffer): Buffer {
          return Buffer.concat([frame, Buffer.from([EOT])])
        }

        before(function () {
          server = parsePrivateKey(session.server.privateKeyPem)
          client = parsePrivateKey(session.client.privateKeyPem)
          expect(server.publicKey.bits).to.equal(session.server.bits)
          expect(client.publicKey.bits).to.equal(session.client.bits)
          expect(parsePublicKey(session.server.publicKeyPem).equals(server.publicKey)).to.equal(true)
          expect(parsePublicKey(session.client.publicKeyPem).equals(client.publicKey)).to.equal(true)
        })

        it('opens with the six handshake frames, client first, turn by turn', function () {
          expect(session.wire.slice(0, 6).map((f) => f.from)).to.deep.equal(['client', 'server', 'client', 'server', 'client', 'server'])
        })

        it('our client, fed the reference server\'s frames, sends what the reference client did and ends with the recorded server key', function () {
          const machine = new HandshakeMachine('client', client)
          const c1 = machine.start()
          expect(c1.send.map((s) => s.step)).to.deep.equal(['PUBKEY'])
          expect(framed(c1.send[0]!.frame).equals(session.wire[0]!.bytes), 'step 1 as recorded').to.equal(true)

          // Step 2 as the reference sends it: raw PEM.
          expect(body(1).toString('latin1')).to.equal(session.server.publicKeyPem)
          const c2 = machine.receive(body(1))
          expect(fields(c2)).to.deep.equal(['send', 'verify'])
          expect(c2.verify!.equals(server.publicKey)).to.equal(true)

          // Step 3 is randomized: it must decrypt with the recorded server key, like the recorded one.
          const c3 = machine.accepted()
          expect(fields(c3)).to.deep.equal(['send'])
          expect(c3.send.map((s) => s.step)).to.deep.equal(['KEYCHECK'])
          expect(c3.send[0]!.frame.length, 'as long as the recorded step 3').to.equal(body(2).length)
          expect(openKeycheck(server, c3.send[0]!.frame)).to.equal(KEYCHECK)
          expect(openKeycheck(server, body(2)), 'the recorded step 3').to.equal(KEYCHECK)

          // Step 5 is byte for byte the reference client's: Base64 of the same PEM.
          expect(machine.expecting).to.equal('PUBKEY')
          const c5 = machine.receive(body(3))
          expect(c5.send.map((s) => s.step)).to.deep.equal(['client key'])
          expect(framed(c5.send[0]!.frame).equals(session.wire[4]!.bytes), 'step 5 as recorded').to.equal(true)

          // The reference server's step 6 decrypts with the recorded client key.
          const c6 = machine.receive(body(5))
          expect(fields(c6)).to.deep.equal(['decrypt', 'send'])
          expect(c6.decrypt!.equals(decodeBase64(body(5)))).to.equal(true)
          expect(c6.decrypt!.length).to.equal(client.publicKey.size)
          const plaintext = decryptMessage(client, c6.decrypt!, { strict: true })
          expect(plaintext.toString('latin1')).to.equal(KEYCHECK)
          const done = machine.keyChecked(plaintext)
          expect(fields(done)).to.deep.equal(['done', 'send'])
          expect(done.send).to.deep.equal([])
          expect(done.done!.equals(server.publicKey)).to.equal(true)
          expect(machine.done).to.equal(true)
        })

        it('our client also takes the recorded server key re-encoded as Base64 PEM, as the standard says', function () {
          const machine = new HandshakeMachine('client', client)
          machine.start()
          expect(machine.receive(encodeBase64(body(1))).verify!.equals(server.publicKey)).to.equal(true)
        })

        for (const encoding of ['pem', 'base64'] as const) {
          it(`our server (server key as ${encoding}), fed the reference client's frames, answers as the reference server did and ends with the recorded client key`, function () {
            const machine = new HandshakeMachine('server', server, { serverKeyEncoding: encoding })
            expect(machine.start().send).to.deep.equal([])

            // Step 2: 'pem' is the reference's raw PEM byte for byte; 'base64' is Base64 of it.
            const s2 = machine.receive(body(0))
            expect(s2.send.map((s) => s.step)).to.deep.equal(['server key'])
            const expected = encoding === 'pem' ? body(1) : encodeBase64(body(1))
            expect(s2.send[0]!.frame.toString('latin1')).to.equal(expected.toString('latin1'))

            // The reference client's step 3 decrypts with the recorded server key, and checks out.
            const s3 = machine.receive(body(2))
            expect(fields(s3)).to.deep.equal(['decrypt', 'send'])
            expect(s3.decrypt!.equals(decodeBase64(body(2)))).to.equal(true)
            const plaintext = decryptMessage(server, s3.decrypt!, { strict: true })
            expect(plaintext.toString('latin1')).to.equal(KEYCHECK)
            const s4 = machine.keyChecked(plaintext)
            expect(s4.send.map((s) => s.step)).to.deep.equal(['PUBKEY'])
            expect(framed(s4.send[0]!.frame).equals(session.wire[3]!.bytes), 'step 4 as recorded').to.equal(true)

            // The reference client's Base64 key.
            const s5 = machine.receive(body(4))
            expect(fields(s5)).to.deep.equal(['send', 'verify'])
            expect(s5.verify!.equals(client.publicKey)).to.equal(true)

            // Step 6 is randomized: it must decrypt with the recorded client key, like the recorded one.
            const s6 = machine.accepted()
            expect(fields(s6)).to.deep.equal(['done', 'send'])
            expect(s6.send.map((s) => s.step)).to.deep.equal(['KEYCHECK'])
            expect(s6.send[0]!.frame.length, 'as long as the recorded step 6').to.equal(body(5).length)
            expect(openKeycheck(client, s6.send[0]!.frame)).to.equal(KEYCHECK)
            expect(openKeycheck(client, body(5)), 'the recorded step 6').to.equal(KEYCHECK)
            expect(s6.done!.equals(client.publicKey)).to.equal(true)
            expect(machine.done).to.equal(true)
          })
        }

        it('takes each recorded handshake frame at its own step only, and fails at every other as that step says', function () {
          /** What each step accepts of the six recorded frames, and how it fails on the others. */
          const RULES: Record<number, { accepts: number[], code: P2snErrorCode, answered: boolean }> = {
            1: { accepts: [0, 3], code: 'ERR_P2SN_PROTOCOL', answered: false },
            // Any readable key: the other side's key read at this step is a key all the same.
            2: { accepts: [1, 4], code: 'ERR_P2SN_BAD_KEY', answered: true },
            3: { accepts: [2], code: 'ERR_P2SN_BAD_KEYCHECK', answered: true },
            4: { accepts: [0, 3], code: 'ERR_P2SN_PROTOCOL', answered: false },
            5: { accepts: [1, 4], code: 'ERR_P2SN_BAD_KEY', answered: true },
            6: { accepts: [5], code: 'ERR_P2SN_BAD_KEYCHECK', answered: true }
          }
          /** What a machine that took a frame at the step expects next (step 6: nothing, it is done). */
          const NEXT: Record<number, FrameStep | undefined> = { 1: 'KEYCHECK', 3: 'client key', 4: 'KEYCHECK', 6: undefined }
          const recordedKeys = [server.publicKey, client.publicKey]
          for (let step = 1; step <= 6; step++) {
            const rule = RULES[step]!
            const keys = step % 2 === 0 ? client : server
            for (let i = 0; i < 6; i++) {
              const machine = recordedWaitingAt(step)
              const where = `recorded frame ${i} at step ${step}`
              if (!rule.accepts.includes(i)) {
                try {
                  expectFailure(() => feed(machine, keys, body(i)), rule.code, rule.answered)
                } catch (err) {
                  throw new Error(`${where}: ${(err as Error).message}`)
                }
                expectSpent(machine)
                continue
              }
              const out = feed(machine, keys, body(i))
              if (step === 2 || step === 5) {
                expect(fields(out), where).to.deep.equal(['send', 'verify'])
                expect(recordedKeys.some((key) => key.equals(out.verify!)), `${where} is a recorded key`).to.equal(true)
              } else {
                expect(machine.expecting, where).to.equal(NEXT[step])
                expect(machine.done, where).to.equal(step === 6)
              }
            }
          }
        })

        /** Our machine of the role that waits for `step`, fed the recorded frames before it. */
        function recordedWaitingAt (step: number): HandshakeMachine {
          if (step % 2 === 0) {
            const machine = new HandshakeMachine('client', client)
            machine.start()
            if (step >= 4) {
              machine.receive(body(1))
              machine.accepted()
            }
            if (step >= 6) machine.receive(body(3))
            expect(machine.expecting).to.equal(STEP_NAMES[step])
            return machine
          }
          const machine = new HandshakeMachine('server', server, { serverKeyEncoding: 'pem' })
          machine.start()
          if (step >= 3) machine.receive(body(0))
          if (step >= 5) feed(machine, server, body(2))
          expect(machine.expecting).to.equal(STEP_NAMES[step])
          return machine
        }

        if (session.name === 'errorkey-1024') {
          describe('the frames the reference refused or sent as a refusal', function () {
            it('its P2SN:ERRORKEY, at every step of either role: ERR_P2SN_ERRORKEY, not answered', function () {
              expect(session.wire[7]!.from).to.equal('server')
              expect(body(7).equals(ERRORKEY)).to.equal(true)
              for (let step = 1; step <= 6; step++) {
                const machine = recordedWaitingAt(step)
                expectFailure(() => machine.receive(body(7)), 'ERR_P2SN_ERRORKEY', false)
                expectSpent(machine)
              }
            })

            it('\'QUJDRA==\' as a key check (step 3 or 6): a ciphertext too short to decrypt, ERR_P2SN_BAD_KEYCHECK, answered', function () {
              expect(session.wire[6]!.from).to.equal('client')
              expect(body(6).toString('latin1')).to.equal('QUJDRA==')
              for (const step of [3, 6]) {
                const machine = recordedWaitingAt(step)
                const out = machine.receive(body(6))
                expect(out.decrypt!.toString('latin1')).to.equal('ABCD')
                const err = expectFailure(() => answerDecrypt(machine, step === 3 ? server : client, out.decrypt!), 'ERR_P2SN_BAD_KEYCHECK', true)
                expect((err.cause as P2snError).code).to.equal('ERR_P2SN_BAD_CIPHERTEXT')
                expectSpent(machine)
              }
            })

            it('\'not base64 at all!\' as a key check (step 3 or 6): ERR_P2SN_BAD_KEYCHECK when received, answered', function () {
              expect(session.wire[8]!.from).to.equal('client')
              expect(body(8).toString('latin1')).to.equal('not base64 at all!')
              for (const step of [3, 6]) {
                const machine = recordedWaitingAt(step)
                const err = expectFailure(() => machine.receive(body(8)), 'ERR_P2SN_BAD_KEYCHECK', true)
                expect((err.cause as P2snError).code).to.equal('ERR_P2SN_BAD_BASE64')
                expectSpent(machine)
              }
            })

            it('either as a key (step 2 or 5): ERR_P2SN_BAD_KEY, answered; as a keyword (step 1 or 4): ERR_P2SN_PROTOCOL, not answered', function () {
              for (const i of [6, 8]) {
                for (const step of [2, 5]) {
                  const machine = recordedWaitingAt(step)
                  expectFailure(() => machine.receive(body(i)), 'ERR_P2SN_BAD_KEY', true)
                  expectSpent(machine)
                }
                for (const step of [1, 4]) {
                  const machine = recordedWaitingAt(step)
                  expectFailure(() => machine.receive(body(i)), 'ERR_P2SN_PROTOCOL', false)
                  expectSpent(machine)
                }
              }
            })
          })
        }
      })
    }
  })

  describe('peer keys read lately, kept by their frame', function () {
    /** The key a fresh client machine reads from `frame` at step 2. */
    function keyRead (frame: Buffer): PublicKey {
      const machine = new HandshakeMachine('client', client1024)
      machine.start()
      return machine.receive(frame).verify!
    }

    it('the same bytes give the same key; another key\'s bytes give that key, never the one kept', function () {
      const first = keyRead(keyFrame(server1024.publicKey))
      expect(keyRead(keyFrame(server1024.publicKey))).to.equal(first)
      const other = keyRead(keyFrame(other1024.publicKey))
      expect(other.equals(other1024.publicKey)).to.equal(true)
      expect(other.equals(first)).to.equal(false)
      // The same key in another encoding is other bytes: read on its own, and still that key.
      const raw = keyRead(keyFrame(server1024.publicKey, 'pem'))
      expect(raw).not.to.equal(first)
      expect(raw.equals(server1024.publicKey)).to.equal(true)
    })

    it('a refused key is refused every time, not kept', function () {
      for (let i = 0; i < 2; i++) expectFailure(() => keyRead(Buffer.from(tinyPem)), 'ERR_P2SN_KEY_TOO_SMALL', true)
    })

    it('keeps 64 at most, the least lately read going first: a peer sending new keys only turns it over', function () {
      // Distinct frames of one key: raw PEM followed by more and more line ends.
      const pem = server1024.publicKey.toPem()
      let next = 1000
      const fresh = (): Buffer => Buffer.from(pem + '\n'.repeat(next++))
      const kept = Buffer.from(pem + '\n'.repeat(999))
      const first = keyRead(kept)
      for (let i = 0; i < 63; i++) keyRead(fresh())
      expect(keyRead(kept), 'still kept after 63 others (and now the latest read)').to.equal(first)
      for (let i = 0; i < 64; i++) keyRead(fresh())
      const again = keyRead(kept)
      expect(again, 'gone after 64 others').not.to.equal(first)
      expect(again.equals(first)).to.equal(true)
    })
  })

  describe('failures', function () {
    describe('P2SN:ERRORKEY received', function () {
      for (let step = 1; step <= 6; step++) {
        it(`at step ${step} (${step % 2 === 0 ? 'client' : 'server'}): ERR_P2SN_ERRORKEY, not answered, and the machine is spent`, function () {
          const machine = waitingAt(step)
          expectFailure(() => machine.receive(Buffer.from('P2SN:ERRORKEY')), 'ERR_P2SN_ERRORKEY', false)
          expect(machine.step, 'the step it failed at').to.equal(STEP_NAMES[step])
          expectSpent(machine)
        })
      }

      it('only the exact keyword: P2SN:ERRORKEY with a byte more, at step 2, is an unreadable key', function () {
        const machine = waitingAt(2)
        expectFailure(() => machine.receive(Buffer.from('P2SN:ERRORKEY ')), 'ERR_P2SN_BAD_KEY', true)
      })
    })

    describe('a wrong keyword where P2SN:PUBKEY belongs', function () {
      const WRONG = ['P2SN:KEYCHECK', 'P2SN:PUBKEY ', ' P2SN:PUBKEY', 'p2sn:pubkey', 'P2SN:PUBKE', 'P2SN:PUBKEY\n', '', 'P2SN:END', 'GET / HTTP/1.1']
      for (const step of [1, 4]) {
        it(`at step ${step}: ERR_P2SN_PROTOCOL, not answered, for each of ${WRONG.length} near misses`, function () {
          for (const wrong of WRONG) {
            const machine = waitingAt(step)
            const err = expectFailure(() => machine.receive(Buffer.from(wrong, 'latin1')), 'ERR_P2SN_PROTOCOL', false)
            expect(err.message).to.include(`step ${step}`)
            expectSpent(machine)
          }
        })
      }

      it('at step 4: the server\'s key again, or a key check, is ERR_P2SN_PROTOCOL', function () {
        for (const frame of [keyFrame(server1024.publicKey, 'pem'), keyFrame(server1024.publicKey), keycheckFor(client1024.publicKey)]) {
          const machine = waitingAt(4)
          expectFailure(() => machine.receive(frame), 'ERR_P2SN_PROTOCOL', false)
          expectSpent(machine)
        }
      })
    })

    describe('a TLS ClientHello where P2SN:PUBKEY belongs', function () {
      for (const version of [0x01, 0x03]) {
        it(`at step 1 (record version 3.${version}): ERR_P2SN_PROTOCOL that names the authenticated mode, not answered`, function () {
          const hello = clientHello(version)
          expect(hello.includes(EOT), 'one frame as a splitter would cut it').to.equal(false)
          const machine = waitingAt(1)
          const err = expectFailure(() => machine.receive(hello), 'ERR_P2SN_PROTOCOL', false)
          expect(err.message).to.match(/tls/)
          expect(err.message).to.match(/auth/)
          expectSpent(machine)
        })
      }

      it('at step 1, the first two bytes are enough (a splitter may cut the record at a 0x04)', function () {
        const machine = waitingAt(1)
        expect(expectFailure(() => machine.receive(Buffer.from([0x16, 0x03])), 'ERR_P2SN_PROTOCOL', false).message).to.match(/tls/)
      })

      it('at step 1, a byte 0x16 alone or followed by another version is only a wrong keyword', function () {
        for (const frame of [Buffer.from([0x16]), Buffer.from([0x16, 0x02, 0x01]), Buffer.from([0x17, 0x03, 0x03])]) {
          const machine = waitingAt(1)
          expect(expectFailure(() => machine.receive(frame), 'ERR_P2SN_PROTOCOL', false).message).not.to.match(/tls/)
        }
      })

      it('at step 4 it is only a wrong keyword', function () {
        const machine = waitingAt(4)
        expect(expectFailure(() => machine.receive(clientHello()), 'ERR_P2SN_PROTOCOL', false).message).to.include('step 4')
      })
    })

    describe('a frame longer than 8 KiB', function () {
      for (let step = 1; step <= 6; step++) {
        it(`at step ${step}: ERR_P2SN_FRAME_TOO_LONG, not answered`, function () {
          const machine = waitingAt(step)
          // Base64-looking bytes, so that no other check could claim it.
          const frame = Buffer.alloc(MAX_HANDSHAKE_FRAME_LENGTH + 1, 0x41)
          expectFailure(() => machine.receive(frame), 'ERR_P2SN_FRAME_TOO_LONG', false)
          expectSpent(machine)
        })
      }

      it('a frame of exactly 8 KiB is not too long: at step 1 a wrong keyword, at step 2 an unreadable key', function () {
        expect(MAX_HANDSHAKE_FRAME_LENGTH).to.equal(8 * 1024)
        const frame = Buffer.alloc(MAX_HANDSHAKE_FRAME_LENGTH, 0x41)
        const step1 = waitingAt(1)
        expectFailure(() => step1.receive(frame), 'ERR_P2SN_PROTOCOL', false)
        const step2 = waitingAt(2)
        expectFailure(() => step2.receive(frame), 'ERR_P2SN_BAD_KEY', true)
      })

      it('at step 2, a real key PEM padded past the limit is refused for its length, not read', function () {
        const pem = keyFrame(server1024.publicKey, 'pem')
        const long = Buffer.concat([pem, Buffer.alloc(MAX_HANDSHAKE_FRAME_LENGTH + 1 - pem.length, 0x0a)])
        const machine = waitingAt(2)
        expectFailure(() => machine.receive(long), 'ERR_P2SN_FRAME_TOO_LONG', false)
      })
    })

    describe('an unreadable or unacceptable key at step 2 or 5', function () {
      const BAD_KEYS: Array<{ label: string, frame: () => Buffer, code: P2snErrorCode }> = [
        { label: 'text that is neither PEM nor Base64', frame: () => Buffer.from('this is not a key!'), code: 'ERR_P2SN_BAD_KEY' },
        { label: 'P2SN:PUBKEY', frame: () => PUBKEY, code: 'ERR_P2SN_BAD_KEY' },
        { label: 'a PEM block of garbage', frame: () => Buffer.from('-----BEGIN RSA PUBLIC KEY-----\nZ2FyYmFnZQ==\n-----END RSA PUBLIC KEY-----\n'), code: 'ERR_P2SN_BAD_KEY' },
        { label: 'Base64 of a PEM block of garbage', frame: () => encodeBase64(Buffer.from('-----BEGIN RSA PUBLIC KEY-----\nZ2FyYmFnZQ==\n-----END RSA PUBLIC KEY-----\n')), code: 'ERR_P2SN_BAD_KEY' },
        { label: 'Base64 of random bytes', frame: () => encodeBase64(crypto.randomBytes(300)), code: 'ERR_P2SN_BAD_KEY' },
        { label: 'an empty frame', frame: () => Buffer.alloc(0), code: 'ERR_P2SN_BAD_KEY' },
        { label: 'the PEM cut short', frame: () => Buffer.from(client2048.publicKey.toPem().slice(0, 100)), code: 'ERR_P2SN_BAD_KEY' },
        { label: 'Base64 PEM with a trailing space', frame: () => Buffer.concat([keyFrame(client2048.publicKey), Buffer.from(' ')]), code: 'ERR_P2SN_BAD_KEY' },
        { label: 'Base64 PEM in lines of 76', frame: () => Buffer.from(keyFrame(client2048.publicKey).toString('latin1').replace(/.{76}/g, '$&\n')), code: 'ERR_P2SN_BAD_KEY' },
        {
          label: 'an EC public key',
          frame: () => Buffer.from(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string),
          code: 'ERR_P2SN_BAD_KEY'
        },
        { label: 'a 512-bit RSA key as raw PEM', frame: () => Buffer.from(tinyPem), code: 'ERR_P2SN_KEY_TOO_SMALL' },
        { label: 'a 512-bit RSA key as Base64 PEM', frame: () => encodeBase64(Buffer.from(tinyPem)), code: 'ERR_P2SN_KEY_TOO_SMALL' },
        { label: 'an RSA key with the exponent 1', frame: () => encodeBase64(Buffer.from(exponentOnePem)), code: 'ERR_P2SN_BAD_EXPONENT' }
      ]
      for (const step of [2, 5]) {
        for (const bad of BAD_KEYS) {
          it(`at step ${step}: ${bad.label} → ${bad.code}, answered`, function () {
            const machine = waitingAt(step)
            expectFailure(() => machine.receive(bad.frame()), bad.code, true)
            expect(machine.step).to.equal(STEP_NAMES[step])
            expectSpent(machine)
          })
        }
      }

      it('the same bad frame twice is refused twice (a refused key is not kept)', function () {
        for (let i = 0; i < 2; i++) {
          const machine = waitingAt(2)
          expectFailure(() => machine.receive(Buffer.from(tinyPem)), 'ERR_P2SN_KEY_TOO_SMALL', true)
        }
      })
    })

    describe('a bad key check at step 3 or 6', function () {
      const NOT_BASE64: Array<{ label: string, frame: (good: Buffer) => Buffer }> = [
        { label: 'not Base64 at all', frame: () => Buffer.from('not base64 at all!') },
        { label: 'without its padding', frame: (good) => Buffer.from(good.toString('latin1').replace(/=+$/, '')) },
        { label: 'a line break inside', frame: (good) => Buffer.from(good.toString('latin1').slice(0, 64) + '\n' + good.toString('latin1').slice(64)) },
        { label: 'the URL-safe alphabet', frame: () => Buffer.from('ab-_'.repeat(43) + 'ab==') },
        { label: 'P2SN:KEYCHECK in plain', frame: () => Buffer.from(KEYCHECK) }
      ]
      for (const step of [3, 6]) {
        const receiverOf = (): KeyPair => step === 3 ? server1024 : client1024

        for (const bad of NOT_BASE64) {
          it(`at step ${step}: ${bad.label} → ERR_P2SN_BAD_KEYCHECK when received, answered, the Base64 error as its cause`, function () {
            const machine = waitingAt(step)
            const err = expectFailure(() => machine.receive(bad.frame(keycheckFor(receiverOf().publicKey))), 'ERR_P2SN_BAD_KEYCHECK', true)
            expect(err.cause).to.be.an.instanceof(P2snError)
            expect((err.cause as P2snError).code).to.equal('ERR_P2SN_BAD_BASE64')
            expectSpent(machine)
          })
        }

        for (const wrong of ['P2SN:KEYCHECK ', 'P2SN:KEYCHEC', 'p2sn:keycheck', 'P2SN:PUBKEY', '', 'P2SN:KEYCHECK\x00']) {
          it(`at step ${step}: a key check that decrypts to ${JSON.stringify(wrong)} → ERR_P2SN_BAD_KEYCHECK from keyChecked, answered`, function () {
            const machine = waitingAt(step)
            const out = machine.receive(keycheckFor(receiverOf().publicKey, Buffer.from(wrong, 'latin1')))
            const plaintext = decryptMessage(receiverOf(), out.decrypt!, { strict: true })
            expect(plaintext.toString('latin1')).to.equal(wrong)
            expectFailure(() => machine.keyChecked(plaintext), 'ERR_P2SN_BAD_KEYCHECK', true)
            expectSpent(machine)
          })
        }

        it(`at step ${step}: a key check encrypted to another key of the same size → implicit rejection, ERR_P2SN_BAD_KEYCHECK, answered`, function () {
          const machine = waitingAt(step)
          const out = machine.receive(keycheckForOther(other1024.publicKey, receiverOf().publicKey))
          const plaintext = decryptMessage(receiverOf(), out.decrypt!, { strict: true })
          expect(plaintext.toString('latin1')).not.to.equal(KEYCHECK)
          expectFailure(() => machine.keyChecked(plaintext), 'ERR_P2SN_BAD_KEYCHECK', true)
          expectSpent(machine)
        })

        const UNDECRYPTABLE: Array<{ label: string, frame: () => Buffer, code: P2snErrorCode }> = [
          { label: 'encrypted to a 2048-bit key (two blocks of ours, strict allows one)', frame: () => keycheckFor(server2048.publicKey), code: 'ERR_P2SN_MESSAGE_TOO_LONG' },
          { label: 'five bytes of ciphertext', frame: () => encodeBase64(Buffer.from('12345')), code: 'ERR_P2SN_BAD_CIPHERTEXT' },
          { label: 'a block of 0xff, above the modulus', frame: () => encodeBase64(Buffer.alloc(128, 0xff)), code: 'ERR_P2SN_BAD_CIPHERTEXT' }
        ]
        for (const bad of UNDECRYPTABLE) {
          it(`at step ${step}: a key check ${bad.label} → the decrypt error (${bad.code}) goes to keyCheckFailed: ERR_P2SN_BAD_KEYCHECK with it as the cause, answered`, function () {
            const machine = waitingAt(step)
            const out = machine.receive(bad.frame())
            const cause = expectP2snErrorSync(() => decryptMessage(receiverOf(), out.decrypt!, { strict: true }), bad.code)
            const err = expectFailure(() => machine.keyCheckFailed(cause), 'ERR_P2SN_BAD_KEYCHECK', true)
            expect(err.cause).to.equal(cause)
            expectSpent(machine)
          })
        }

        it(`at step ${step}: keyCheckFailed with any cause (a decrypt error with rejection: 'error') → ERR_P2SN_BAD_KEYCHECK, answered`, function () {
          const machine = waitingAt(step)
          const out = machine.receive(keycheckForOther(other1024.publicKey, receiverOf().publicKey))
          const cause = expectP2snErrorSync(() => decryptMessage(receiverOf(), out.decrypt!, { strict: true, rejection: 'error' }), 'ERR_P2SN_DECRYPT')
          const err = expectFailure(() => machine.keyCheckFailed(cause), 'ERR_P2SN_BAD_KEYCHECK', true)
          expect(err.cause).to.equal(cause)
          expectSpent(machine)
        })

        it(`at step ${step}: an empty frame asks to decrypt nothing, which fails to keyCheckFailed`, function () {
          const machine = waitingAt(step)
          const out = machine.receive(Buffer.alloc(0))
          expect(out.decrypt!.length).to.equal(0)
          expectFailure(() => answerDecrypt(machine, receiverOf(), out.decrypt!), 'ERR_P2SN_BAD_KEYCHECK', true)
          expectSpent(machine)
        })
      }

      it('keyChecked takes P2SN:KEYCHECK in any buffer, e.g. a slice of a larger one', function () {
        const machine = waitingAt(3)
        machine.receive(keycheckFor(server1024.publicKey))
        const big = Buffer.from(`xx${KEYCHECK}yy`)
        expect(sent(machine.keyChecked(big.subarray(2, 2 + KEYCHECK.length)))).to.deep.equal([['P2SN:PUBKEY', 'PUBKEY']])
      })
    })

    describe('methods called out of turn: ERR_P2SN_INVALID_ARGUMENT, not answered', function () {
      it('receive while a key check waits to be decrypted (server at step 3, client at step 6); the machine still goes on', function () {
        for (const step of [3, 6]) {
          const machine = waitingAt(step)
          const keys = step === 3 ? server1024 : client1024
          const out = machine.receive(keycheckFor(keys.publicKey))
          expect(machine.expecting).to.equal(undefined)
          expectFailure(() => machine.receive(PUBKEY), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expectFailure(() => machine.receive(Buffer.from('P2SN:ERRORKEY')), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expectFailure(() => machine.accepted(), 'ERR_P2SN_INVALID_ARGUMENT', false)
          const next = answerDecrypt(machine, keys, out.decrypt!)
          if (step === 3) expect(sent(next)).to.deep.equal([['P2SN:PUBKEY', 'PUBKEY']])
          else expect(next.done!.equals(server1024.publicKey)).to.equal(true)
        }
      })

      it('receive while a key waits for its verdict (client at step 2, server at step 5); the machine still goes on', function () {
        for (const step of [2, 5]) {
          const machine = waitingAt(step)
          const peer = step === 2 ? server1024 : client1024
          expect(machine.receive(keyFrame(peer.publicKey)).verify!.equals(peer.publicKey)).to.equal(true)
          expect(machine.expecting).to.equal(undefined)
          expectFailure(() => machine.receive(keycheckFor(peer.publicKey)), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expectFailure(() => machine.keyChecked(Buffer.from(KEYCHECK)), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expectFailure(() => machine.keyCheckFailed(new Error('x')), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expect(openKeycheck(peer, machine.accepted().send[0]!.frame)).to.equal(KEYCHECK)
        }
      })

      it('keyChecked and keyCheckFailed when no decrypt was asked for: waiting for a frame, for a verdict, or done', function () {
        const machines = [waitingAt(1), waitingAt(2), waitingAt(4), waitingAt(5), waitingAt(6)]
        const verdict = waitingAt(2)
        verdict.receive(keyFrame(server1024.publicKey))
        machines.push(verdict)
        for (const machine of machines) {
          const expecting = machine.expecting
          expectFailure(() => machine.keyChecked(Buffer.from(KEYCHECK)), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expectFailure(() => machine.keyCheckFailed(new Error('x')), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expect(machine.expecting, 'unchanged').to.equal(expecting)
        }
      })

      it('accepted when no key waits for a verdict: waiting for a frame, or for a decrypt', function () {
        for (let step = 1; step <= 6; step++) {
          const machine = waitingAt(step)
          expectFailure(() => machine.accepted(), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expect(machine.expecting, 'unchanged').to.equal(STEP_NAMES[step])
        }
        const decrypting = waitingAt(3)
        decrypting.receive(keycheckFor(server1024.publicKey))
        expectFailure(() => decrypting.accepted(), 'ERR_P2SN_INVALID_ARGUMENT', false)
      })

      it('anything after done, on either side', function () {
        const client = waitingAt(6)
        answerDecrypt(client, client1024, client.receive(keycheckFor(client1024.publicKey)).decrypt!)
        const server = waitingAt(5)
        server.receive(keyFrame(client1024.publicKey))
        server.accepted()
        for (const machine of [client, server]) {
          expect(machine.done).to.equal(true)
          expectFailure(() => machine.receive(PUBKEY), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expectFailure(() => machine.receive(Buffer.from('P2SN:ERRORKEY')), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expectFailure(() => machine.keyChecked(Buffer.from(KEYCHECK)), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expectFailure(() => machine.accepted(), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expect(machine.done, 'still done').to.equal(true)
        }
      })
    })

    describe('start(): once, and first', function () {
      it('takes no frame before start(), for either role, and expects none', function () {
        for (const role of ['client', 'server'] as const) {
          const machine = new HandshakeMachine(role, role === 'client' ? client1024 : server1024)
          expect(machine.expecting).to.equal(undefined)
          expectFailure(() => machine.receive(Buffer.from('QUJDRA==')), 'ERR_P2SN_INVALID_ARGUMENT', false)
          expectFailure(() => machine.receive(PUBKEY), 'ERR_P2SN_INVALID_ARGUMENT', false)
          // Refused calls change nothing: it still starts as it should.
          expect(sent(machine.start())).to.deep.equal(role === 'client' ? [['P2SN:PUBKEY', 'PUBKEY']] : [])
          expect(machine.expecting).to.equal(role === 'client' ? 'server key' : 'PUBKEY')
        }
      })

      it('refuses a second start(), mid-handshake and once done, without rewinding', function () {
        const client = new HandshakeMachine('client', client1024)
        client.start()
        expectFailure(() => client.start(), 'ERR_P2SN_INVALID_ARGUMENT', false)
        expect(client.expecting).to.equal('server key')
        const done = waitingAt(6)
        answerDecrypt(done, client1024, done.receive(keycheckFor(client1024.publicKey)).decrypt!)
        expect(done.done).to.equal(true)
        expectFailure(() => done.start(), 'ERR_P2SN_INVALID_ARGUMENT', false)
        expect(done.done).to.equal(true)
      })

      it('refuses a role that is neither client nor server', function () {
        expectFailure(() => new HandshakeMachine('peer' as unknown as 'client', client1024), 'ERR_P2SN_INVALID_ARGUMENT', false)
      })
    })

    describe('a machine is spent after a throw', function () {
      it('after each kind of failure, at each role, every method is refused and done stays false', function () {
        const failures: Array<{ label: string, fail: () => HandshakeMachine }> = [
          { label: 'ERRORKEY', fail: () => { const m = waitingAt(2); thrownBy(() => m.receive(ERRORKEY)); return m } },
          { label: 'wrong keyword', fail: () => { const m = waitingAt(1); thrownBy(() => m.receive(Buffer.from('nope'))); return m } },
          { label: 'too long', fail: () => { const m = waitingAt(4); thrownBy(() => m.receive(Buffer.alloc(MAX_HANDSHAKE_FRAME_LENGTH + 1))); return m } },
          { label: 'bad key', fail: () => { const m = waitingAt(5); thrownBy(() => m.receive(Buffer.from('nope'))); return m } },
          { label: 'bad base64', fail: () => { const m = waitingAt(6); thrownBy(() => m.receive(Buffer.from('nope!'))); return m } },
          {
            label: 'wrong plaintext',
            fail: () => { const m = waitingAt(3); m.receive(keycheckFor(server1024.publicKey)); thrownBy(() => m.keyChecked(Buffer.from('no'))); return m }
          },
          {
            label: 'keyCheckFailed',
            fail: () => { const m = waitingAt(6); m.receive(keycheckFor(client1024.publicKey)); thrownBy(() => m.keyCheckFailed(new Error('x'))); return m }
          }
        ]
        for (const { label, fail } of failures) {
          const machine = fail()
          try {
            expectSpent(machine)
          } catch (err) {
            throw new Error(`after ${label}: ${(err as Error).message}`)
          }
        }
      })

      /** Runs `fn`, which must throw a P2snError. */
      function thrownBy (fn: () => unknown): void {
        expect(thrown(fn)).to.be.an.instanceof(P2snError)
      }
    })
  })
})
