import net from 'node:net'
import { expect } from 'chai'
import fc from 'fast-check'
import {
  createServer, decodeBase64, decryptMessage, encodeBase64, P2snError, parsePrivateKey, wrap,
  type Channel, type Handler, type KeyPair, type P2snErrorCode, type PeerInfo
} from '../lib/index.js'
import { seededRandom, type ChunkPlan } from './helpers/chunking.js'
import { expectP2snError } from './helpers/errors.js'
import { fixtureJson, loadSessions, RECORDED_SESSION_NAMES, type RecordedSession } from './helpers/fixtures.js'
import { bytePair, ScriptedPeer } from './helpers/frame-pair.js'
import { listenLocal } from './helpers/net.js'
import { settle } from './helpers/timing.js'

const EOT = Buffer.from([0x04])
const PUBKEY = 'P2SN:PUBKEY'
const KEYCHECK = 'P2SN:KEYCHECK'
const ERRORKEY = 'P2SN:ERRORKEY'
const UNEXPECTEDERROR = 'P2SN:UNEXPECTEDERROR'

/** How the recorded bytes are cut before they reach our side. */
interface Cutting {
  label: string
  plan: () => ChunkPlan | undefined
}

const CUTTINGS: Cutting[] = [
  { label: 'frame by frame, as recorded', plan: () => undefined },
  { label: 'a byte at a time', plan: () => 'byte' },
  { label: 'cut at random points (seed 7)', plan: () => seededRandom(7) },
  { label: 'cut at random points (seed 2024)', plan: () => seededRandom(2024) }
]

/** A channel under test, with what it emitted. */
interface Watched {
  channel: Channel
  errors: unknown[]
  messages: Buffer[]
  closed: Promise<void>
  handshake: Promise<PeerInfo>
}

function watch (channel: Channel, { collect = false } = {}): Watched {
  const errors: unknown[] = []
  const messages: Buffer[] = []
  channel.on('error', (err: unknown) => { errors.push(err) })
  if (collect) channel.on('data', (message: Buffer) => { messages.push(message) })
  const closed = new Promise<void>((resolve) => { channel.on('close', () => { resolve() }) })
  const handshake = new Promise<PeerInfo>((resolve, reject) => {
    channel.once('handshake', resolve)
    channel.once('close', () => { reject(new Error(`closed before the handshake (errors: ${errors.map(String).join(', ')})`)) })
  })
  handshake.catch(() => {})
  return { channel, errors, messages, closed, handshake }
}

/** Waits for the channel to close and asserts its one error: a P2snError with `code`. */
async function expectChannelFailure (watched: Watched, code: P2snErrorCode): Promise<P2snError> {
  await watched.closed
  await settle()
  expect(watched.errors.length, 'at least one error event').to.be.greaterThan(0)
  for (const err of watched.errors) {
    expect(err).to.be.an.instanceof(P2snError)
    expect((err as P2snError).code, (err as Error).message).to.equal(code)
  }
  return watched.errors[0] as P2snError
}

/** The frames' text, for readable comparisons. */
function texts (frames: Buffer[]): string[] {
  return frames.map((f) => f.toString('latin1'))
}

/** A frame's bytes with the terminator, as the recording holds them. */
function framed (body: Buffer): Buffer {
  return Buffer.concat([body, EOT])
}

/** What the reference server's handler did in a session, as a handler of ours. */
function recordedHandler (session: RecordedSession): Handler {
  const raw = fixtureJson(`vectors/${session.file}`) as { serverHandler?: unknown }
  const description = String(raw.serverHandler)
  if (description === 'replies the request unchanged') return (message) => message
  if (description.includes('Hi! You sent me')) return (message) => Buffer.concat([Buffer.from('Hi! You sent me "'), message, Buffer.from('"')])
  if (description.startsWith('raises')) return () => { throw new Error('the handler raised') }
  throw new Error(`fixture ${session.file}: unknown serverHandler ${description}`)
}

describe('playback of recorded Python sessions', function () {
  const sessions = loadSessions()

  it('plays all six recordings', function () {
    expect(sessions.map((s) => s.name)).to.deep.equal(RECORDED_SESSION_NAMES)
  })

  for (const session of sessions) {
    describe(`${session.name}: ${session.description}`, function () {
      let server: KeyPair
      let client: KeyPair
      const wire = session.wire.map((f) => f.bytes)
      const fromServer = session.wire.filter((f) => f.from === 'server').map((f) => f.bytes)
      const fromClient = session.wire.filter((f) => f.from === 'client').map((f) => f.bytes)
      const raw = session.rawExchanges.length > 0

      before(function () {
        server = parsePrivateKey(session.server.privateKeyPem)
        client = parsePrivateKey(session.client.privateKeyPem)
      })

      /** Decrypts a frame (terminator excluded) of ours with a recorded private key: strict Base64, one RSA block. */
      function open (keys: KeyPair, frame: Buffer | null): Buffer {
        expect(frame, 'a frame, not the end of the stream').not.to.equal(null)
        const ciphertext = decodeBase64(frame!)
        expect(ciphertext.length, 'one rsa block of the receiver\'s key').to.equal(keys.publicKey.size)
        return decryptMessage(keys, ciphertext, { rejection: 'error', strict: true })
      }

      // ---- Our client, the recorded server's frames played back to it

      /** Our client over a byte pair, and the scripted server on the other end. */
      function ourClient (): { watched: Watched, peer: ScriptedPeer } {
        const [near, far] = bytePair()
        const peer = new ScriptedPeer(far)
        const channel = wrap(near, { role: 'client', keyPair: session.client.privateKeyPem, strict: true })
        return { watched: watch(channel), peer }
      }

      /** Steps 1 to 6 with our client: reads its frames and answers with the recorded server frames. */
      async function handshakeWithOurClient (watched: Watched, peer: ScriptedPeer, plan: ChunkPlan | undefined): Promise<void> {
        expect(framed((await peer.read())!).equals(wire[0]!), 'step 1 is P2SN:PUBKEY as recorded').to.equal(true)
        peer.sendBytes(wire[1]!, plan)
        expect(open(server, await peer.read()).toString('latin1'), 'step 3').to.equal(KEYCHECK)
        peer.sendBytes(wire[3]!, plan)
        // Step 5 is the same bytes as the reference client's: Base64 of the same PEM.
        expect(framed((await peer.read())!).equals(wire[4]!), 'step 5 is the recorded Base64 PEM').to.equal(true)
        peer.sendBytes(wire[5]!, plan)
        const info = await watched.handshake
        expect(info.publicKey.equals(server.publicKey), 'the client read the raw PEM of step 2').to.equal(true)
        expect(info.fingerprint).to.equal(server.publicKey.fingerprint)
      }

      describe('playing the server: our client gets the recorded server frames', function () {
        for (const cutting of CUTTINGS) {
          if (!raw) {
            it(`completes the handshake and reads every recorded reply (${cutting.label})`, async function () {
              const plan = cutting.plan()
              const { watched, peer } = ourClient()
              await handshakeWithOurClient(watched, peer, plan)
              for (const [i, exchange] of session.exchanges.entries()) {
                const request = Buffer.from(exchange.requestHex, 'hex')
                const reply = watched.channel.request(request)
                expect(open(server, await peer.read()).equals(request), `request ${i + 1} reaches the server`).to.equal(true)
                expect(session.wire[7 + 2 * i]!.from).to.equal('server')
                peer.sendBytes(wire[7 + 2 * i]!, plan)
                if (Buffer.from(exchange.replyHex, 'hex').toString('latin1') === UNEXPECTEDERROR) {
                  await expectP2snError(reply, 'ERR_P2SN_UNEXPECTED_ERROR')
                } else {
                  expect((await reply).toString('hex'), `reply ${i + 1}`).to.equal(exchange.replyHex)
                }
              }
              watched.channel.end()
              expect(await peer.read(), 'our client ends its stream').to.equal(null)
              peer.hangUp()
              await watched.closed
              await settle()
              expect(watched.errors).to.deep.equal([])
              expect(peer.unterminated.length).to.equal(0)
            })
          } else {
            it(`completes the handshake, then fails with ERR_P2SN_ERRORKEY on the recorded P2SN:ERRORKEY (${cutting.label})`, async function () {
              const plan = cutting.plan()
              const { watched, peer } = ourClient()
              await handshakeWithOurClient(watched, peer, plan)
              const reply = watched.channel.request('ABCD')
              expect(open(server, await peer.read()).toString()).to.equal('ABCD')
              expect(session.wire[7]!.from).to.equal('server')
              expect(wire[7]!.toString('latin1')).to.equal(`${ERRORKEY}\x04`)
              peer.sendBytes(wire[7]!, plan)
              await expectP2snError(reply, 'ERR_P2SN_ERRORKEY')
              await expectChannelFailure(watched, 'ERR_P2SN_ERRORKEY')
              expect(await peer.read(), 'no answer to ERRORKEY, just the end').to.equal(null)
            })
          }
        }

        it('reads every recorded server frame sent at once, before it asks, cut at random points', async function () {
          const { watched, peer } = ourClient()
          watched.channel.on('data', (message: Buffer) => { watched.messages.push(message) })
          peer.sendBytes(Buffer.concat(fromServer), seededRandom(11))
          await watched.handshake
          const ours = await peer.read()
          expect(ours?.toString()).to.equal(PUBKEY)
          if (raw) {
            await expectChannelFailure(watched, 'ERR_P2SN_ERRORKEY')
            return
          }
          peer.hangUp()
          watched.channel.end()
          await watched.closed
          expect(watched.errors).to.deep.equal([])
          // The replies came unasked, so they are plain messages here, P2SN:UNEXPECTEDERROR too.
          expect(watched.messages.map((m) => m.toString('hex'))).to.deep.equal(session.exchanges.map((e) => e.replyHex))
        })
      })

      // ---- Our server, the recorded client's frames played back to it

      /** Our server over a byte pair, answering each request with the recorded reply, and the scripted client. */
      function ourServer (options: { serverKeyEncoding?: 'pem' | 'base64', echo?: boolean } = {}): { watched: Watched, peer: ScriptedPeer, requests: Buffer[] } {
        const [near, far] = bytePair()
        const peer = new ScriptedPeer(far)
        const channel = wrap(near, { role: 'server', keyPair: session.server.privateKeyPem, serverKeyEncoding: options.serverKeyEncoding })
        const watched = watch(channel)
        const requests: Buffer[] = []
        channel.on('data', (request: Buffer) => {
          const exchange = session.exchanges[requests.length]
          requests.push(request)
          channel.write(options.echo === true || exchange === undefined ? request : Buffer.from(exchange.replyHex, 'hex'))
        })
        channel.on('end', () => { channel.end() })
        return { watched, peer, requests }
      }

      /** Steps 1 to 6 with our server, fed the recorded client frames. */
      async function handshakeWithOurServer (watched: Watched, peer: ScriptedPeer, plan: ChunkPlan | undefined, encoding: 'pem' | 'base64'): Promise<void> {
        peer.sendBytes(wire[0]!, plan)
        const step2 = framed((await peer.read())!)
        if (encoding === 'pem') {
          expect(step2.equals(wire[1]!), 'step 2 with serverKeyEncoding \'pem\' is the recorded raw PEM, byte for byte').to.equal(true)
        } else {
          const pem = wire[1]!.subarray(0, -1)
          expect(step2.toString('latin1'), 'step 2 by default is Base64 of the recorded PEM').to.equal(framed(encodeBase64(pem)).toString('latin1'))
        }
        peer.sendBytes(wire[2]!, plan)
        expect(framed((await peer.read())!).equals(wire[3]!), 'step 4 is P2SN:PUBKEY as recorded').to.equal(true)
        peer.sendBytes(wire[4]!, plan)
        expect(open(client, await peer.read()).toString('latin1'), 'step 6 decrypts with the recorded client key').to.equal(KEYCHECK)
        const info = await watched.handshake
        expect(info.publicKey.equals(client.publicKey)).to.equal(true)
      }

      describe('playing the client: our server gets the recorded client frames', function () {
        for (const cutting of CUTTINGS) {
          if (!raw) {
            it(`accepts them and answers every request so that the recorded client key decrypts it (${cutting.label})`, async function () {
              const plan = cutting.plan()
              const { watched, peer, requests } = ourServer({ serverKeyEncoding: 'pem' })
              await handshakeWithOurServer(watched, peer, plan, 'pem')
              for (const [i, exchange] of session.exchanges.entries()) {
                expect(session.wire[6 + 2 * i]!.from).to.equal('client')
                peer.sendBytes(wire[6 + 2 * i]!, plan)
                expect(open(client, await peer.read()).toString('hex'), `reply ${i + 1}`).to.equal(exchange.replyHex)
                expect(requests[i]?.toString('hex'), `request ${i + 1}`).to.equal(exchange.requestHex)
              }
              peer.hangUp()
              expect(await peer.read(), 'our server ends after the client').to.equal(null)
              await watched.closed
              await settle()
              expect(watched.errors).to.deep.equal([])
              expect(requests).to.have.length(session.exchanges.length)
            })
          } else {
            it(`accepts the handshake, then fails with ERR_P2SN_BAD_CIPHERTEXT on 'QUJDRA==' (${cutting.label})`, async function () {
              const plan = cutting.plan()
              const { watched, peer, requests } = ourServer({ serverKeyEncoding: 'pem' })
              await handshakeWithOurServer(watched, peer, plan, 'pem')
              expect(wire[6]!.toString('latin1')).to.equal('QUJDRA==\x04')
              peer.sendBytes(wire[6]!, plan)
              // The recording goes on with a frame that is not Base64: our server no longer listens.
              peer.sendBytes(wire[8]!, plan)
              expect(texts(await peer.rest()), 'nothing, or P2SN:ERRORKEY in plain (see below)').to.deep.be.oneOf([[], [ERRORKEY]])
              peer.hangUp()
              await expectChannelFailure(watched, 'ERR_P2SN_BAD_CIPHERTEXT')
              expect(requests).to.deep.equal([])
            })
          }
        }

        it('sends its key at step 2 as Base64 of the recorded PEM by default, and the handshake completes', async function () {
          const { watched, peer } = ourServer()
          await handshakeWithOurServer(watched, peer, undefined, 'base64')
          watched.channel.destroy()
          await watched.closed
          expect(watched.errors).to.deep.equal([])
        })

        /** Checks our server's frames against the recording: steps 2, 4, 6, then one reply per request. */
        function expectAnswers (frames: Buffer[], requests: Buffer[]): void {
          expect(frames).to.have.length(3 + session.exchanges.length)
          expect(framed(frames[0]!).equals(wire[1]!)).to.equal(true)
          expect(frames[1]!.toString()).to.equal(PUBKEY)
          expect(open(client, frames[2]!).toString()).to.equal(KEYCHECK)
          expect(requests.map((r) => r.toString('hex'))).to.deep.equal(session.exchanges.map((e) => e.requestHex))
          expect(frames.slice(3).map((f) => open(client, f).toString('hex'))).to.deep.equal(session.exchanges.map((e) => e.replyHex))
        }

        it('takes the whole recorded client stream at once, cut at any points (property)', async function () {
          const stream = Buffer.concat(fromClient)
          await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 40 }), async (cuts) => {
            const { watched, peer, requests } = ourServer({ serverKeyEncoding: 'pem' })
            peer.sendBytes(stream, cuts)
            if (raw) {
              const frames = await peer.rest()
              peer.hangUp()
              await expectChannelFailure(watched, 'ERR_P2SN_BAD_CIPHERTEXT')
              expect(frames).to.have.length.within(3, 4)
              expect(texts(frames.slice(3))).to.deep.be.oneOf([[], [ERRORKEY]])
              expect(requests).to.deep.equal([])
              return
            }
            const frames: Buffer[] = []
            while (frames.length < 3 + session.exchanges.length) {
              const frame = await peer.read()
              if (frame === null) break
              frames.push(frame)
            }
            peer.hangUp()
            expect(await peer.read(), 'our server ends after the client').to.equal(null)
            await watched.closed
            expect(watched.errors).to.deep.equal([])
            expectAnswers(frames, requests)
          }), { numRuns: 6, seed: 42 })
        })

        if (!raw) {
          // A client may send everything and end its side at once (`printf ... | nc`): the answers
          // are still owed. lib/channel.ts at HEAD loses them: pump tears the wrap() chain down as
          // soon as the splitter's input ends, frames still unread (see the report). Enable once fixed.
          it('answers every request of a client that sent the whole recording and ended its side at once', async function () {
            const { watched, peer, requests } = ourServer({ serverKeyEncoding: 'pem' })
            peer.sendBytes(Buffer.concat(fromClient))
            peer.hangUp()
            const frames = await peer.rest()
            await watched.closed
            expect(watched.errors).to.deep.equal([])
            expectAnswers(frames, requests)
          })
        }

        if (raw) {
          it('fails with ERR_P2SN_BAD_BASE64 on \'not base64 at all!\' right after the handshake', async function () {
            const { watched, peer, requests } = ourServer({ serverKeyEncoding: 'pem' })
            await handshakeWithOurServer(watched, peer, undefined, 'pem')
            expect(wire[8]!.toString('latin1')).to.equal('not base64 at all!\x04')
            peer.sendBytes(wire[8]!)
            expect(texts(await peer.rest())).to.deep.be.oneOf([[], [ERRORKEY]])
            peer.hangUp()
            await expectChannelFailure(watched, 'ERR_P2SN_BAD_BASE64')
            expect(requests).to.deep.equal([])
          })

          // PROTOCOL.md: "A frame that does not decode or decrypt gets P2SN:ERRORKEY in plain", as
          // the recording shows. Neither failure is a padding oracle (the length and the alphabet are
          // public), but lib/channel.ts does not answer yet: enable once it does (see the report).
          for (const bad of [{ at: 6, code: 'ERR_P2SN_BAD_CIPHERTEXT' }, { at: 8, code: 'ERR_P2SN_BAD_BASE64' }] as const) {
            it(`answers P2SN:ERRORKEY in plain before failing with ${bad.code}, as the reference does`, async function () {
              const { watched, peer } = ourServer({ serverKeyEncoding: 'pem' })
              await handshakeWithOurServer(watched, peer, undefined, 'pem')
              peer.sendBytes(wire[bad.at]!)
              expect(texts(await peer.rest())).to.deep.equal([ERRORKEY])
              // As a client would on P2SN:ERRORKEY: hang up, which lets the refusal complete at once.
              peer.hangUp()
              await expectChannelFailure(watched, bad.code)
            })
          }
        }

        if (session.name === 'echo-2048') {
          it('takes an encrypted P2SN:KEYCHECK after the handshake for a message, and answers it (the reference does not)', async function () {
            // Not in the recording: the reference server gives it no reply at all. To us it is a
            // message like any other, and a server answers every message.
            const { watched, peer, requests } = ourServer({ serverKeyEncoding: 'pem', echo: true })
            await handshakeWithOurServer(watched, peer, undefined, 'pem')
            // The recorded step 3 is just that: P2SN:KEYCHECK encrypted to the server key.
            peer.sendBytes(wire[2]!)
            expect(open(client, await peer.read()).toString()).to.equal(KEYCHECK)
            expect(requests.map((r) => r.toString())).to.deep.equal([KEYCHECK])
            // The recorded frame 11 is P2SN:PUBKEY encrypted as a message: also just a message.
            peer.sendBytes(wire[10]!)
            expect(open(client, await peer.read()).toString()).to.equal(PUBKEY)
            expect(requests.map((r) => r.toString())).to.deep.equal([KEYCHECK, PUBKEY])
            peer.hangUp()
            await watched.closed
            expect(watched.errors).to.deep.equal([])
          })
        }
      })

      describe('playing the client over TCP: createServer with the recorded handler, strict', function () {
        it(raw
          ? 'accepts the handshake, reports ERR_P2SN_BAD_CIPHERTEXT as a clientError, and hangs up'
          : 'answers each request as the reference did, P2SN:UNEXPECTEDERROR included', async function () {
          const ours = createServer({ keyPair: session.server.privateKeyPem, serverKeyEncoding: 'pem', strict: true, handler: recordedHandler(session) })
          const clientErrors: unknown[] = []
          const clientError = new Promise<void>((resolve) => { ours.once('clientError', () => { resolve() }) })
          const handlerErrors: unknown[] = []
          ours.on('clientError', (err: unknown) => { clientErrors.push(err) })
          ours.on('channel', (channel: Channel) => { channel.on('handlerError', (err: unknown) => { handlerErrors.push(err) }) })
          const port = await listenLocal(ours)
          const socket = net.connect({ host: '127.0.0.1', port })
          const peer = new ScriptedPeer(socket)
          try {
            peer.sendBytes(wire[0]!)
            expect(framed((await peer.read())!).equals(wire[1]!), 'step 2: the recorded raw PEM').to.equal(true)
            peer.sendBytes(wire[2]!)
            expect((await peer.read())?.toString()).to.equal(PUBKEY)
            peer.sendBytes(wire[4]!)
            expect(open(client, await peer.read()).toString()).to.equal(KEYCHECK)
            if (raw) {
              peer.sendBytes(wire[6]!)
              expect(texts(await peer.rest())).to.deep.be.oneOf([[], [ERRORKEY]])
              socket.end()
              await clientError
              expect(clientErrors).to.have.length(1)
              expect(clientErrors[0]).to.be.an.instanceof(P2snError)
              expect((clientErrors[0] as P2snError).code).to.equal('ERR_P2SN_BAD_CIPHERTEXT')
              return
            }
            for (const [i, exchange] of session.exchanges.entries()) {
              peer.sendBytes(wire[6 + 2 * i]!)
              expect(open(client, await peer.read()).toString('hex'), `reply ${i + 1}`).to.equal(exchange.replyHex)
            }
            const unexpected = session.exchanges.filter((e) => Buffer.from(e.replyHex, 'hex').toString() === UNEXPECTEDERROR).length
            expect(handlerErrors).to.have.length(unexpected)
            socket.end()
            expect(await peer.read(), 'our server hangs up after the client').to.equal(null)
            expect(clientErrors).to.deep.equal([])
          } finally {
            socket.destroy()
            await new Promise<void>((resolve) => { ours.close(() => { resolve() }) })
          }
        })
      })
    })
  }
})
