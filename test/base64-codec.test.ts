import { expect } from 'chai'
import fc from 'fast-check'
import { Base64Codec, FrameSplitter, decodeBase64, encodeBase64 } from '../lib/index.js'
import { collect, expectQuietDestroy, rechunk, seededRandom } from './helpers/chunking.js'
import { expectP2snError } from './helpers/errors.js'

/** RFC 4648 §10 test vectors. */
const RFC4648: ReadonlyArray<readonly [string, string]> = [
  ['', ''], ['f', 'Zg=='], ['fo', 'Zm8='], ['foo', 'Zm9v'], ['foob', 'Zm9vYg=='], ['fooba', 'Zm9vYmE='], ['foobar', 'Zm9vYmFy']
]

/** Frames that are not canonical P2SN Base64, as text or raw bytes. */
const NOT_BASE64: ReadonlyArray<readonly [string, string | Buffer]> = [
  ['garbage that Buffer.from decodes to "ABCD"', 'QU$JD\nRA=='],
  ['the URL-safe "-"', 'Pj4-'],
  ['the URL-safe "_"', 'Pz8_'],
  ['only URL-safe characters', '-_-_'],
  ['missing padding, two characters', 'QQ'],
  ['missing padding, three characters', 'QUI'],
  ['a single character', 'Q'],
  ['non-zero unused bits (one byte)', 'QR=='],
  ['non-zero unused bits (two bytes)', 'QUJ='],
  ['a trailing newline', 'QUJD\n'],
  ['a trailing CRLF', 'QUJD\r\n'],
  ['a leading space', ' QUJD'],
  ['a space inside', 'QU JD'],
  ['a tab inside', 'QU\tJD'],
  ['a line break inside', 'QUJD\nQUJD'],
  ['data after padding', 'QQ==QQ=='],
  ['too much padding', 'QQ==='],
  ['too little padding', 'QQ='],
  ['padding on a full group', 'QUJD='],
  ['padding after one character', 'Q==='],
  ['a lone "="', '='],
  ['only padding', '===='],
  ['a NUL byte', 'QUJD\0'],
  ['a byte 0x80', Buffer.from([0x51, 0x55, 0x4a, 0x44, 0x80])],
  ['a byte 0xff inside', Buffer.from([0x51, 0x55, 0xff, 0x4a, 0x44])],
  ['UTF-8 text', Buffer.from('QUJDé', 'utf8')],
  ['a 0x04 terminator', Buffer.from([0x51, 0x55, 0x4a, 0x44, 0x04])]
]

/** Runs `frames` through a fresh decoder stream. */
async function decodeStream (frames: unknown[]): Promise<Buffer[]> {
  return await collect(Base64Codec.decoder(), frames)
}

/** Runs `frames` through a fresh encoder stream. */
async function encodeStream (frames: unknown[]): Promise<Buffer[]> {
  return await collect(Base64Codec.encoder(), frames)
}

/** Raw bytes through splitter piped into decoder: the decoded frames, or the first error of either. */
async function splitAndDecode (chunks: Buffer[]): Promise<Buffer[]> {
  const splitter = new FrameSplitter()
  const decoder = Base64Codec.decoder()
  splitter.pipe(decoder)
  return await new Promise<Buffer[]>((resolve, reject) => {
    const out: Buffer[] = []
    splitter.on('error', reject)
    decoder.on('error', reject)
    decoder.on('data', (frame: Buffer) => { out.push(frame) })
    decoder.on('end', () => { resolve(out) })
    for (const chunk of chunks) splitter.write(chunk)
    splitter.end()
  })
}

describe('Base64', () => {
  describe('encodeBase64 / decodeBase64', () => {
    for (const [plain, encoded] of RFC4648) {
      it(`encodes ${JSON.stringify(plain)} as ${JSON.stringify(encoded)} and back (RFC 4648)`, () => {
        const out = encodeBase64(Buffer.from(plain))
        expect(Buffer.isBuffer(out)).to.equal(true)
        expect(out.toString('latin1')).to.equal(encoded)
        expect(decodeBase64(encoded)).to.deep.equal(Buffer.from(plain))
        expect(decodeBase64(Buffer.from(encoded))).to.deep.equal(Buffer.from(plain))
      })
    }

    it('uses "+" and "/" (the standard alphabet)', () => {
      expect(encodeBase64(Buffer.from([0xfb, 0xef, 0xbe])).toString()).to.equal('++++')
      expect(encodeBase64(Buffer.from([0xff, 0xff, 0xff])).toString()).to.equal('////')
      expect(decodeBase64('+/+/')).to.deep.equal(Buffer.from('+/+/', 'base64'))
    })

    it('decodes an empty frame to an empty Buffer', () => {
      const out = decodeBase64(Buffer.alloc(0))
      expect(Buffer.isBuffer(out)).to.equal(true)
      expect(out.length).to.equal(0)
      expect(decodeBase64('').length).to.equal(0)
    })

    it('decodes only the viewed bytes of a Uint8Array into a larger buffer', () => {
      const backing = Buffer.from('!!QUJD!!')
      expect(decodeBase64(new Uint8Array(backing.buffer, backing.byteOffset + 2, 4))).to.deep.equal(Buffer.from('ABC'))
    })

    it('encodes only the viewed bytes of a Uint8Array into a larger buffer', () => {
      const backing = Buffer.from('xABCDx')
      expect(encodeBase64(backing.subarray(1, 5)).toString()).to.equal('QUJDRA==')
    })

    it('decode(encode(x)) = x, and encode matches Buffer#toString("base64") (property)', () => {
      fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const encoded = encodeBase64(bytes)
        expect(encoded.toString('latin1')).to.equal(Buffer.from(bytes).toString('base64'))
        expect(decodeBase64(encoded)).to.deep.equal(Buffer.from(bytes))
      }))
    })

    it('accepts a string only if it re-encodes to itself (property)', () => {
      const noisy = fc.string({ unit: fc.constantFrom(...'AQgw+/=-_ \nRB9$é'), maxLength: 12 })
      let accepted = 0
      let rejected = 0
      fc.assert(fc.property(fc.oneof(fc.base64String({ maxLength: 24 }), noisy), (text) => {
        let decoded: Buffer
        try {
          decoded = decodeBase64(text)
        } catch (err) {
          rejected++
          expect((err as { code?: unknown }).code).to.equal('ERR_P2SN_BAD_BASE64')
          expect(Buffer.from(text, 'base64').toString('base64')).to.not.equal(text)
          return
        }
        accepted++
        expect(encodeBase64(decoded).toString('latin1')).to.equal(text)
      }), { numRuns: 500 })
      expect(accepted, 'some inputs were accepted').to.be.greaterThan(0)
      expect(rejected, 'some inputs were rejected').to.be.greaterThan(0)
    })

    for (const [label, input] of NOT_BASE64) {
      it(`rejects ${label} with ERR_P2SN_BAD_BASE64`, async () => {
        await expectP2snError(() => decodeBase64(input), 'ERR_P2SN_BAD_BASE64')
      })
    }

    it('rejects non-Latin-1 characters in a string', async () => {
      await expectP2snError(() => decodeBase64('QUJD\u0100'), 'ERR_P2SN_BAD_BASE64')
      await expectP2snError(() => decodeBase64('QUJD\u{1F600}'), 'ERR_P2SN_BAD_BASE64')
    })
  })

  describe('Base64Codec.encoder()', () => {
    it('encodes each frame to one Base64 frame', async () => {
      const out = await encodeStream([Buffer.from('foo'), Buffer.from('fo'), Buffer.alloc(0)])
      expect(out).to.deep.equal([Buffer.from('Zm9v'), Buffer.from('Zm8='), Buffer.alloc(0)])
      for (const frame of out) expect(Buffer.isBuffer(frame)).to.equal(true)
    })

    it('accepts strings (as UTF-8) and Uint8Arrays', async () => {
      const out = await encodeStream(['é', new Uint8Array([0x66, 0x6f])])
      expect(out.map((f) => f.toString())).to.deep.equal(['w6k=', 'Zm8='])
    })

    it('rejects a non-bytes value with ERR_P2SN_INVALID_ARGUMENT', async () => {
      await expectP2snError(encodeStream([42]), 'ERR_P2SN_INVALID_ARGUMENT')
    })

    it('matches Buffer#toString("base64") for any frames (property)', async () => {
      await fc.assert(fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), async (frames) => {
        const out = await encodeStream(frames)
        expect(out.map((f) => f.toString('latin1'))).to.deep.equal(frames.map((f) => Buffer.from(f).toString('base64')))
      }))
    })

    it('closes without an error on a plain destroy()', async () => {
      await expectQuietDestroy(Base64Codec.encoder(), ['abc'])
    })
  })

  describe('Base64Codec.decoder()', () => {
    it('decodes each frame to one frame of bytes', async () => {
      const out = await decodeStream([Buffer.from('Zm9v'), 'Zm8=', new Uint8Array(0)])
      expect(out).to.deep.equal([Buffer.from('foo'), Buffer.from('fo'), Buffer.alloc(0)])
    })

    it('treats each written value as a whole frame (does not join writes)', async () => {
      await expectP2snError(decodeStream(['QU', 'JD']), 'ERR_P2SN_BAD_BASE64')
    })

    it('decodes what the encoder wrote, for any frames (property)', async () => {
      await fc.assert(fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), async (frames) => {
        const out = await decodeStream(await encodeStream(frames))
        expect(out).to.deep.equal(frames.map((f) => Buffer.from(f)))
      }))
    })

    it('emits the frames before a bad one, then fails', async () => {
      const decoder = Base64Codec.decoder()
      const out: Buffer[] = []
      decoder.on('data', (frame: Buffer) => { out.push(frame) })
      await expectP2snError(collect(decoder, ['Zm9v', 'QR==', 'Zm9v']), 'ERR_P2SN_BAD_BASE64')
      expect(out).to.deep.equal([Buffer.from('foo')])
    })

    for (const [label, input] of NOT_BASE64) {
      it(`fails with ERR_P2SN_BAD_BASE64 on ${label}`, async () => {
        await expectP2snError(decodeStream([input]), 'ERR_P2SN_BAD_BASE64')
      })
    }

    it('rejects a non-bytes value with ERR_P2SN_INVALID_ARGUMENT', async () => {
      await expectP2snError(decodeStream([{}]), 'ERR_P2SN_INVALID_ARGUMENT')
    })

    it('closes without an error on a plain destroy()', async () => {
      await expectQuietDestroy(Base64Codec.decoder(), ['Zm9v'])
    })
  })

  describe('FrameSplitter → decoder', () => {
    it('decodes frames re-chunked a byte at a time', async () => {
      const wire = Buffer.from('Zm9v\x04\x04Zm8=\x04')
      expect(await splitAndDecode(rechunk(wire, 'byte'))).to.deep.equal([Buffer.from('foo'), Buffer.alloc(0), Buffer.from('fo')])
    })

    it('decodes frames re-chunked at seeded random points', async () => {
      const frames = Array.from({ length: 20 }, (_, i) => Buffer.alloc(i * 7, i))
      const wire = Buffer.concat(frames.map((f) => Buffer.from(f.toString('base64') + '\x04')))
      for (let seed = 1; seed <= 10; seed++) {
        expect(await splitAndDecode(rechunk(wire, seededRandom(seed))), `seed ${seed}`).to.deep.equal(frames)
      }
    })

    it('decodes any frames at any chunking (property)', async () => {
      await fc.assert(fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 48 }), { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 16 }), async (frames, cuts) => {
        const wire = Buffer.concat(frames.map((f) => Buffer.from(Buffer.from(f).toString('base64') + '\x04')))
        const out = await splitAndDecode(rechunk(wire, cuts.map((c) => c % (wire.length + 1))))
        expect(out).to.deep.equal(frames.map((f) => Buffer.from(f)))
      }))
    })

    it('fails with ERR_P2SN_BAD_BASE64 when a split frame is not Base64', async () => {
      await expectP2snError(splitAndDecode(rechunk(Buffer.from('Zm9v\x04QU$JD\nRA==\x04'), 'byte')), 'ERR_P2SN_BAD_BASE64')
    })
  })
})
