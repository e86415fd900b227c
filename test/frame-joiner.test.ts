import { expect } from 'chai'
import fc from 'fast-check'
import { FrameJoiner, FrameSplitter } from '../lib/index.js'
import { collect, expectQuietDestroy, rechunk } from './helpers/chunking.js'
import { expectP2snError } from './helpers/errors.js'

const EOT = 0x04

/** The bytes a fresh joiner writes for `frames`, concatenated. */
async function join (frames: unknown[]): Promise<Buffer> {
  const out = await collect(new FrameJoiner(), frames)
  for (const chunk of out) expect(Buffer.isBuffer(chunk)).to.equal(true)
  return Buffer.concat(out)
}

describe('FrameJoiner', () => {
  it('appends 0x04 to a Buffer frame', async () => {
    expect(await join([Buffer.from('hello')])).to.deep.equal(Buffer.from('hello\x04'))
  })

  it('writes one chunk per frame, each ending in 0x04', async () => {
    const out = await collect(new FrameJoiner(), [Buffer.from('a'), Buffer.from('bc')])
    expect(out).to.deep.equal([Buffer.from('a\x04'), Buffer.from('bc\x04')])
  })

  it('writes an empty frame as a lone 0x04', async () => {
    expect(await join([Buffer.alloc(0), ''])).to.deep.equal(Buffer.from([EOT, EOT]))
  })

  it('accepts a string frame, as UTF-8', async () => {
    expect(await join(['P2SN:PUBKEY', 'é'])).to.deep.equal(Buffer.from('P2SN:PUBKEY\x04\xc3\xa9\x04', 'latin1'))
  })

  it('accepts a Uint8Array frame', async () => {
    expect(await join([new Uint8Array([0x61, 0x62])])).to.deep.equal(Buffer.from('ab\x04'))
  })

  it('accepts a Uint8Array view into a larger buffer, writing only the viewed bytes', async () => {
    const backing = new Uint8Array([0x78, 0x61, 0x62, 0x78])
    expect(await join([backing.subarray(1, 3)])).to.deep.equal(Buffer.from('ab\x04'))
  })

  it('rejects a Buffer frame containing 0x04 with ERR_P2SN_INVALID_ARGUMENT', async () => {
    await expectP2snError(join([Buffer.from([0x61, EOT, 0x62])]), 'ERR_P2SN_INVALID_ARGUMENT')
  })

  it('rejects a string frame containing 0x04 with ERR_P2SN_INVALID_ARGUMENT', async () => {
    await expectP2snError(join(['\x04']), 'ERR_P2SN_INVALID_ARGUMENT')
  })

  it('rejects a frame ending in 0x04 (no double terminator)', async () => {
    await expectP2snError(join([Buffer.from('ab\x04')]), 'ERR_P2SN_INVALID_ARGUMENT')
  })

  it('writes the frames before a bad one, and nothing after', async () => {
    const joiner = new FrameJoiner()
    const out: Buffer[] = []
    joiner.on('data', (chunk: Buffer) => { out.push(chunk) })
    await expectP2snError(collect(joiner, ['a', '\x04', 'b']), 'ERR_P2SN_INVALID_ARGUMENT')
    expect(Buffer.concat(out)).to.deep.equal(Buffer.from('a\x04'))
  })

  for (const [label, value] of [['a number', 42], ['an object', { length: 1 }], ['a boolean', true], ['an array', [0x61]]] as const) {
    it(`rejects ${label} with ERR_P2SN_INVALID_ARGUMENT`, async () => {
      await expectP2snError(join([value]), 'ERR_P2SN_INVALID_ARGUMENT')
    })
  }

  it('round-trips any frames through joiner, any chunking and splitter (property)', async () => {
    const frame = fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b.filter((x) => x !== EOT)))
    await fc.assert(fc.asyncProperty(fc.array(frame, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), async (frames, cuts) => {
      const bytes = await join(frames)
      expect(bytes.length).to.equal(frames.reduce((n, f) => n + f.length + 1, 0))
      const out = await collect(new FrameSplitter(), rechunk(bytes, cuts.map((c) => c % (bytes.length + 1))))
      expect(out).to.deep.equal(frames)
    }))
  })

  it('round-trips frames written a byte at a time into the splitter', async () => {
    const frames = ['P2SN:PUBKEY', '', 'QUJD', 'P2SN:KEYCHECK']
    const out = await collect(new FrameSplitter(), rechunk(await join(frames), 'byte'))
    expect(out.map((f) => f.toString())).to.deep.equal(frames)
  })

  describe('destroy', () => {
    it('closes without an error on a plain destroy()', async () => {
      await expectQuietDestroy(new FrameJoiner())
    })

    it('closes without an error on a plain destroy() after writes', async () => {
      await expectQuietDestroy(new FrameJoiner(), ['a', 'b'])
    })
  })
})
