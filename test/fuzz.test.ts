// Fuzzing of everything that reads bytes from a peer: every run must end in data or a
// P2snError with a code, never another exception or a hang. `npm run fuzz` runs it 50 times
// longer; P2SN_FUZZ_RUNS sets the multiplier.
import { expect } from 'chai'
import fc from 'fast-check'
import {
  FrameSplitter, HandshakeDuplex, P2snError, decodeBase64, decryptMessage, encryptMessage, generateKeyPair,
  parsePrivateKey, parsePublicKey, type FrameTransport, type KeyPair, type Role
} from '../lib/index.js'
import { rechunk } from './helpers/chunking.js'
import { loadSessions, type RecordedSession } from './helpers/fixtures.js'
import { framePair } from './helpers/frame-pair.js'

const SCALE = Number(process.env.P2SN_FUZZ_RUNS ?? (process.env.npm_lifecycle_event === 'fuzz' ? 50 : 1))
const runs = (n: number): number => Math.max(1, Math.round(n * SCALE))

/** Runs `fn`; returns its result, or the code of the P2snError it threw. Anything else fails the test. */
function outcome<T> (fn: () => T, codes: readonly string[]): T | string {
  try {
    return fn()
  } catch (err) {
    expect(err, String(err)).to.be.instanceOf(P2snError)
    expect(codes).to.include((err as P2snError).code)
    return (err as P2snError).code
  }
}

/** Bytes mutated a few times: flips, insertions, deletions, and truncation. */
const mutated = (seed: Uint8Array): fc.Arbitrary<Buffer> => fc.array(
  fc.tuple(fc.constantFrom('flip', 'insert', 'delete', 'truncate'), fc.nat(), fc.integer({ min: 0, max: 255 })),
  { minLength: 1, maxLength: 6 }
).map((edits) => {
  let bytes = Buffer.from(seed)
  for (const [kind, at, value] of edits) {
    const i = bytes.length === 0 ? 0 : at % bytes.length
    if (kind === 'flip' && bytes.length > 0) bytes[i] = bytes[i]! ^ (value || 1)
    else if (kind === 'insert') bytes = Buffer.concat([bytes.subarray(0, i), Buffer.from([value]), bytes.subarray(i)])
    else if (kind === 'delete') bytes = Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + 1)])
    else if (kind === 'truncate') bytes = bytes.subarray(0, i)
  }
  return bytes
})

describe('fuzzing', function () {
  this.timeout(120_000 * SCALE)
  const sessions = loadSessions()

  it('FrameSplitter: any bytes in any chunks give frames within the limit or a coded error', async () => {
    await fc.assert(fc.asyncProperty(
      fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat({ max: 600 }), { maxLength: 20 }), fc.integer({ min: 0, max: 64 }),
      async (bytes, cuts, maxFrameLength) => {
        const splitter = new FrameSplitter({ maxFrameLength })
        const frames: Buffer[] = []
        splitter.on('data', (frame: Buffer) => frames.push(frame))
        const result = new Promise<string>((resolve) => {
          splitter.on('error', (err: Error) => {
            expect(err).to.be.instanceOf(P2snError)
            resolve((err as P2snError).code)
          })
          splitter.on('end', () => resolve('end'))
        })
        for (const chunk of rechunk(Buffer.from(bytes), cuts)) {
          if (splitter.destroyed) break
          splitter.write(chunk)
        }
        if (!splitter.destroyed) splitter.end()
        expect(['end', 'ERR_P2SN_FRAME_TOO_LONG', 'ERR_P2SN_TRUNCATED']).to.include(await result)
        for (const frame of frames) expect(frame.length).to.be.at.most(maxFrameLength)
      }
    ), { numRuns: runs(400) })
  })

  it('Base64 decoding: any bytes, and mutations of recorded frames, decode or fail with ERR_P2SN_BAD_BASE64', () => {
    const frames = sessions.flatMap((s) => s.wire.map((w) => w.bytes.subarray(0, -1)))
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)), fc.constantFrom(...frames).chain(mutated)), (input) => {
      const result = outcome(() => decodeBase64(input), ['ERR_P2SN_BAD_BASE64'])
      if (Buffer.isBuffer(result)) expect(result.toString('base64')).to.equal(input.toString('latin1'))
    }), { numRuns: runs(1000) })
  })

  it('key parsing: mutated PEM and DER of the recorded keys load or fail with a key error', () => {
    const pems = sessions.flatMap((s) => [s.server.privateKeyPem, s.client.publicKeyPem])
    const codes = ['ERR_P2SN_BAD_KEY', 'ERR_P2SN_KEY_TOO_SMALL', 'ERR_P2SN_KEY_TOO_LARGE', 'ERR_P2SN_BAD_EXPONENT', 'ERR_P2SN_INVALID_ARGUMENT']
    fc.assert(fc.property(fc.constantFrom(...pems).map((pem) => Buffer.from(pem)).chain(mutated), fc.boolean(), (pem, asDer) => {
      // Mutate inside the Base64 body too: decode, mutate, re-encode under the same label.
      const input = asDer ? rewrap(pem) : pem
      outcome(() => parsePublicKey(input), codes)
      outcome(() => parsePrivateKey(input), codes)
    }), { numRuns: runs(300) })
  })

  /**
   * Plays one side of a recorded session against our HandshakeDuplex in `role`, with some
   * frames mutated, dropped or repeated; resolves with how it ended.
   */
  async function playMutated (session: RecordedSession, role: Role, frames: Buffer[]): Promise<string> {
    const [ours, theirs] = framePair()
    const keyPair = role === 'server' ? session.server.privateKeyPem : session.client.privateKeyPem
    const handshake = new HandshakeDuplex(ours as unknown as FrameTransport, { role, keyPair, handshakeTimeout: 300 })
    const ended = new Promise<string>((resolve) => {
      handshake.on('error', (err: Error) => {
        expect(err, String(err)).to.be.instanceOf(P2snError)
        resolve((err as P2snError).code)
      })
      handshake.on('handshake', () => {
        setTimeout(() => {
          handshake.destroy()
          resolve('handshake')
        }, 20)
      })
    })
    handshake.resume()
    for (const frame of frames) theirs.write(frame)
    const hang = new Promise<string>((resolve) => setTimeout(() => resolve('hang'), 3000))
    const outcome = await Promise.race([ended, hang])
    handshake.destroy()
    theirs.destroy()
    return outcome
  }

  for (const role of ['server', 'client'] as const) {
    it(`HandshakeDuplex as ${role}: the other side's recorded frames, mutated, end in a handshake or a coded error, never a hang`, async () => {
      const codes = [
        'handshake', 'ERR_P2SN_PROTOCOL', 'ERR_P2SN_BAD_KEY', 'ERR_P2SN_KEY_TOO_SMALL', 'ERR_P2SN_KEY_TOO_LARGE', 'ERR_P2SN_BAD_EXPONENT',
        'ERR_P2SN_BAD_KEYCHECK', 'ERR_P2SN_ERRORKEY', 'ERR_P2SN_HANDSHAKE_TIMEOUT', 'ERR_P2SN_FRAME_TOO_LONG', 'ERR_P2SN_CLOSED'
      ]
      const seen = new Set<string>()
      const from = role === 'server' ? 'client' : 'server'
      await fc.assert(fc.asyncProperty(
        fc.constantFrom(...sessions),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom('mutate', 'drop', 'repeat')), { maxLength: 3 }),
        fc.integer({ min: 0, max: 0xffff }),
        async (session, edits, seed) => {
          let frames = session.wire.filter((w) => w.from === from).map((w) => w.bytes.subarray(0, -1))
          for (const [at, kind] of edits) {
            const i = at % frames.length
            if (kind === 'drop') frames = frames.filter((_, j) => j !== i)
            else if (kind === 'repeat') frames = [...frames.slice(0, i + 1), frames[i]!, ...frames.slice(i + 1)]
            else fc.sample(mutated(frames[i]!), { numRuns: 1, seed }).forEach((m) => { frames[i] = m })
          }
          const outcome = await playMutated(session, role, frames)
          expect(codes, outcome).to.include(outcome)
          seen.add(outcome)
        }
      ), { numRuns: runs(60) })
      expect(seen.has('handshake')).to.equal(true)
      expect(seen.size).to.be.above(2)
    })
  }

  it('decryption: random and mutated ciphertexts decrypt (implicitly) or fail with ERR_P2SN_BAD_CIPHERTEXT', async () => {
    const keys: KeyPair = await generateKeyPair({ bits: 1024 })
    const good = encryptMessage(keys, 'fuzz me')
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)), mutated(good)), (ciphertext) => {
      outcome(() => decryptMessage(keys, ciphertext), ['ERR_P2SN_BAD_CIPHERTEXT'])
    }), { numRuns: runs(300) })
  })
})

/** The PEM's label around a Base64 body made from its bytes' mutation-damaged DER. */
function rewrap (pem: Buffer): Buffer {
  const text = pem.toString('latin1')
  const label = /-----BEGIN ([A-Z ]+)-----/.exec(text)?.[1] ?? 'RSA PUBLIC KEY'
  const body = text.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '')
  const der = Buffer.from(body, 'base64')
  if (der.length > 10) der[der.length >> 1] = der[der.length >> 1]! ^ 0x41
  return Buffer.from(`-----BEGIN ${label}-----\n${der.toString('base64')}\n-----END ${label}-----\n`)
}
