import { expect } from 'chai'
import { decryptMessage, encryptMessage, P2snError, parsePrivateKey, parsePublicKey, type KeyPair } from '../lib/index.js'
import { loadSessions, RECORDED_SESSION_NAMES, type RecordedSession } from './helpers/fixtures.js'

const ENGINES = ['openssl', 'forge'] as const
const EOT = 0x04
const PUBKEY = 'P2SN:PUBKEY'
const KEYCHECK = 'P2SN:KEYCHECK'
const ERRORKEY = 'P2SN:ERRORKEY'

/** A frame of the recording that carries a message encrypted to one side's key. */
interface EncryptedFrame {
  /** 1-based position on the wire, as the handshake table of PROTOCOL.md numbers the steps. */
  step: number
  label: string
  from: 'client' | 'server'
  /** Whose key it was encrypted to: the other side's. */
  to: 'client' | 'server'
  plaintext: Buffer
}

/** The frame's bytes without its terminator, after checking that it ends in 0x04 and holds no other. */
function frameBody (bytes: Buffer): Buffer {
  expect(bytes.length).to.be.greaterThan(0)
  expect(bytes[bytes.length - 1], 'the frame ends in 0x04').to.equal(EOT)
  const body = bytes.subarray(0, -1)
  expect(body.includes(EOT), 'no other 0x04 inside the frame').to.equal(false)
  return body
}

/** Strict standard Base64 (RFC 4648 §4, = padding), as P2SN sends it. */
function strictBase64 (body: Buffer): Buffer {
  const text = body.toString('latin1')
  expect(text, 'P2SN Base64').to.match(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/)
  const bytes = Buffer.from(text, 'base64')
  expect(bytes.toString('base64')).to.equal(text)
  return bytes
}

/**
 * The encrypted frames of a session: the key checks of steps 3 and 6, then the requests and
 * replies in order. Plain frames (steps 1, 2, 4, 5, P2SN:ERRORKEY) and the raw frames of the
 * error scenarios are not in the list.
 */
function encryptedFrames (session: RecordedSession): EncryptedFrame[] {
  const frames: EncryptedFrame[] = [
    { step: 3, label: 'step 3: the client\'s key check', from: 'client', to: 'server', plaintext: Buffer.from(KEYCHECK) },
    { step: 6, label: 'step 6: the server\'s key check', from: 'server', to: 'client', plaintext: Buffer.from(KEYCHECK) }
  ]
  session.exchanges.forEach((exchange, i) => {
    frames.push({ step: 7 + 2 * i, label: `request ${i + 1}`, from: 'client', to: 'server', plaintext: Buffer.from(exchange.requestHex, 'hex') })
    frames.push({ step: 8 + 2 * i, label: `reply ${i + 1}`, from: 'server', to: 'client', plaintext: Buffer.from(exchange.replyHex, 'hex') })
  })
  return frames
}

describe('recorded sessions with the Python reference (test/fixtures/vectors)', function () {
  const sessions = loadSessions()

  it('are all there: six sessions, each with a handshake and exchanges', function () {
    expect(sessions.map((s) => s.name)).to.deep.equal(RECORDED_SESSION_NAMES)
    for (const session of sessions) {
      expect(session.file).to.equal(`${session.name}.json`)
      expect(session.exchanges.length + session.rawExchanges.length, session.name).to.be.greaterThan(0)
    }
  })

  for (const session of sessions) {
    describe(`recorded session ${session.name}: ${session.description}`, function () {
      let server: KeyPair
      let client: KeyPair

      before(function () {
        server = parsePrivateKey(session.server.privateKeyPem)
        client = parsePrivateKey(session.client.privateKeyPem)
      })

      const keyOf = (side: 'client' | 'server'): KeyPair => side === 'server' ? server : client

      it(`holds ${session.server.bits}-bit server and ${session.client.bits}-bit client keys matching their public PEM`, function () {
        expect(server.privateKey.bits).to.equal(session.server.bits)
        expect(client.privateKey.bits).to.equal(session.client.bits)
        expect(server.publicKey.toPem()).to.equal(session.server.publicKeyPem)
        expect(client.publicKey.toPem()).to.equal(session.client.publicKeyPem)
      })

      describe('the frames on the wire', function () {
        it('each end in 0x04, with no other 0x04 inside', function () {
          for (const frame of session.wire) frameBody(frame.bytes)
        })

        it('follow the handshake table: client, server, client, server, client, server, then requests and replies', function () {
          expect(session.wire.slice(0, 6).map((f) => f.from)).to.deep.equal(['client', 'server', 'client', 'server', 'client', 'server'])
          if (session.rawExchanges.length === 0) {
            expect(session.wire.length).to.equal(6 + 2 * session.exchanges.length)
            session.wire.slice(6).forEach((frame, i) => expect(frame.from, `frame ${7 + i}`).to.equal(i % 2 === 0 ? 'client' : 'server'))
          }
        })

        it('step 1 and step 4 are P2SN:PUBKEY in plain', function () {
          expect(frameBody(session.wire[0]!.bytes).toString('latin1')).to.equal(PUBKEY)
          expect(frameBody(session.wire[3]!.bytes).toString('latin1')).to.equal(PUBKEY)
        })

        it('step 2 is the server\'s public key as raw PEM text (not Base64)', function () {
          const body = frameBody(session.wire[1]!.bytes).toString('latin1')
          expect(body).to.equal(session.server.publicKeyPem)
          expect(body).to.match(/^-----BEGIN RSA PUBLIC KEY-----\n/)
          expect(parsePublicKey(body).equals(server.publicKey)).to.equal(true)
        })

        it('step 5 is Base64 of the client\'s public key PEM', function () {
          const body = frameBody(session.wire[4]!.bytes)
          const pem = strictBase64(body).toString('latin1')
          expect(pem).to.equal(session.client.publicKeyPem)
          expect(parsePublicKey(pem).equals(client.publicKey)).to.equal(true)
        })

        it('the encrypted frames are Base64 of one RSA block of the receiver\'s key', function () {
          for (const frame of encryptedFrames(session)) {
            const wire = session.wire[frame.step - 1]
            expect(wire, `${frame.label} is on the wire`).not.to.equal(undefined)
            expect(wire!.from, frame.label).to.equal(frame.from)
            const ciphertext = strictBase64(frameBody(wire!.bytes))
            expect(ciphertext.length, frame.label).to.equal(keyOf(frame.to).publicKey.size)
          }
        })
      })

      for (const engine of ENGINES) {
        describe(`decrypting the recording with the recorded private keys (engine ${engine})`, function () {
          for (const frame of encryptedFrames(session)) {
            it(`${frame.label} (frame ${frame.step}, ${frame.from} to ${frame.to}) → ${frame.plaintext.length <= 24 ? JSON.stringify(frame.plaintext.toString('latin1')) : `${frame.plaintext.length} bytes`}`, function () {
              const ciphertext = strictBase64(frameBody(session.wire[frame.step - 1]!.bytes))
              const options = { engine, strict: true, rejection: 'error' } as const
              expect(decryptMessage(keyOf(frame.to), ciphertext, options).toString('hex')).to.equal(frame.plaintext.toString('hex'))
              expect(decryptMessage(keyOf(frame.to), ciphertext, { engine }).toString('hex'), 'and with implicit rejection').to.equal(frame.plaintext.toString('hex'))
            })
          }
        })

        describe(`our ciphertexts for the recorded public keys (engine ${engine})`, function () {
          it('decrypt back with the recorded private keys, with the keys read from PEM fields and from the wire', function () {
            const serverKeyFromWire = frameBody(session.wire[1]!.bytes).toString('latin1')
            const clientKeyFromWire = strictBase64(frameBody(session.wire[4]!.bytes)).toString('latin1')
            const publicOf = (side: 'client' | 'server'): string[] => side === 'server'
              ? [session.server.publicKeyPem, serverKeyFromWire]
              : [session.client.publicKeyPem, clientKeyFromWire]
            for (const frame of encryptedFrames(session)) {
              for (const pem of publicOf(frame.to)) {
                // strict: the Python reference reads one RSA block per message.
                const ciphertext = encryptMessage(pem, frame.plaintext, { engine, strict: true })
                expect(ciphertext.length).to.equal(keyOf(frame.to).publicKey.size)
                const privatePem = frame.to === 'server' ? session.server.privateKeyPem : session.client.privateKeyPem
                expect(decryptMessage(privatePem, ciphertext, { engine, rejection: 'error' }).equals(frame.plaintext), frame.label).to.equal(true)
              }
            }
          })
        })
      }

      if (session.rawExchanges.length > 0) {
        describe('the deliberately bad frames after the handshake', function () {
          it('are the raw bytes of the exchanges, answered by a plain P2SN:ERRORKEY or not at all', function () {
            let position = 6
            for (const raw of session.rawExchanges) {
              const sent = session.wire[position++]
              expect(sent?.from).to.equal('client')
              expect(sent!.bytes.equals(Buffer.from(raw.sentRawBase64, 'base64'))).to.equal(true)
              if (raw.answerRawHex !== '') {
                const answer = session.wire[position++]
                expect(answer?.from).to.equal('server')
                expect(frameBody(answer!.bytes).toString('hex')).to.equal(raw.answerRawHex)
                expect(frameBody(answer!.bytes).toString('latin1')).to.equal(ERRORKEY)
              }
            }
            expect(position).to.equal(session.wire.length)
          })

          it('a Base64 frame that is no RSA block is refused as ERR_P2SN_BAD_CIPHERTEXT, before any private operation', function () {
            const first = session.rawExchanges[0]!
            const body = frameBody(Buffer.from(first.sentRawBase64, 'base64'))
            const bytes = strictBase64(body)
            expect(bytes.length).not.to.equal(server.publicKey.size)
            for (const engine of ENGINES) {
              const err = (() => {
                try {
                  decryptMessage(server, bytes, { engine })
                } catch (caught) {
                  return caught
                }
                return undefined
              })()
              expect(err).to.be.instanceOf(P2snError)
              expect((err as P2snError).code).to.equal('ERR_P2SN_BAD_CIPHERTEXT')
            }
          })
        })
      }
    })
  }

  describe('recorded session hi-overflow-1024: why the reference answered P2SN:UNEXPECTEDERROR', function () {
    it('the reply the handler made does not fit one block of the client\'s key: strict refuses it with ERR_P2SN_MESSAGE_TOO_LONG', function () {
      const session = sessions.find((s) => s.name === 'hi-overflow-1024')
      expect(session).not.to.equal(undefined)
      const request = Buffer.from(session!.exchanges[0]!.requestHex, 'hex')
      expect(Buffer.from(session!.exchanges[0]!.replyHex, 'hex').toString('latin1')).to.equal('P2SN:UNEXPECTEDERROR')
      const wouldBe = Buffer.concat([Buffer.from('Hi! You sent me "'), request, Buffer.from('"')])
      const client = parsePublicKey(session!.client.publicKeyPem)
      expect(wouldBe.length).to.be.greaterThan(client.maxBlockPlaintext)
      let err: unknown
      try {
        encryptMessage(client, wouldBe, { strict: true })
      } catch (caught) {
        err = caught
      }
      expect(err).to.be.instanceOf(P2snError)
      expect((err as P2snError).code).to.equal('ERR_P2SN_MESSAGE_TOO_LONG')
      // Without strict, this project's multi-block extension carries it.
      expect(encryptMessage(client, wouldBe).length).to.equal(2 * client.size)
    })
  })
})
