import { expect } from 'chai'
import fc from 'fast-check'
import { FrameDecoder, type FrameDecoderOptions } from '../lib/core/frame-decoder.js'
import { encodeFrame } from '../lib/core/frame-encoder.js'
import { DEFAULT_MAX_FRAME_LENGTH } from '../lib/protocol.js'
import { rechunk, seededRandom, type ChunkPlan } from './helpers/chunking.js'
import { expectP2snErrorSync, thrown } from './helpers/errors.js'

const EOT = 0x04

/** `frames` each followed by 0x04, as one buffer. */
function wire (...frames: Array<string | Uint8Array>): Buffer {
  return Buffer.concat(frames.flatMap((f) => [Buffer.from(f), Buffer.from([EOT])]))
}

/** Every frame `decoder` cuts from `chunk`, in order. */
function drain (decoder: FrameDecoder, chunk: Buffer): Buffer[] {
  decoder.write(chunk)
  const frames: Buffer[] = []
  for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) frames.push(frame)
  expect(decoder.holding, 'holding after next() gave undefined').to.equal(false)
  return frames
}

/**
 * The frames a fresh decoder cuts from `bytes` cut up as `plan` says, as strings; checks after
 * every step that no more than `limit` bytes are pending, and ends the input.
 */
function decode (bytes: Buffer, plan: ChunkPlan, options: FrameDecoderOptions = {}): string[] {
  const decoder = new FrameDecoder(options)
  const limit = Math.max(decoder.maxFrameLength, options.maxLeadingFrameLength ?? 0)
  const frames: string[] = []
  for (const chunk of rechunk(bytes, plan)) {
    for (const frame of drain(decoder, chunk)) frames.push(frame.toString('latin1'))
    expect(decoder.pendingLength).to.be.at.most(limit)
  }
  decoder.end()
  return frames
}

describe('FrameDecoder', () => {
  describe('cutting', () => {
    it('cuts many frames from one chunk, in order, empty ones included', () => {
      expect(decode(wire('a', '', 'bc', 'def', ''), [])).to.deep.equal(['a', '', 'bc', 'def', ''])
    })

    it('cuts input written a byte at a time', () => {
      expect(decode(wire('P2SN:PUBKEY', '', 'QUJD'), 'byte')).to.deep.equal(['P2SN:PUBKEY', '', 'QUJD'])
    })

    it('joins a frame cut at every position of a chunk boundary', () => {
      const bytes = wire('hello', 'world')
      for (let cut = 0; cut <= bytes.length; cut++) {
        expect(decode(bytes, [cut]), `cut at ${cut}`).to.deep.equal(['hello', 'world'])
      }
    })

    it('keeps every byte value other than 0x04 intact, randomly chunked (seeded)', () => {
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== EOT))
      const text = all.toString('latin1')
      for (let seed = 1; seed <= 5; seed++) {
        expect(decode(wire(all, all, all), seededRandom(seed)), `seed ${seed}`).to.deep.equal([text, text, text])
      }
    })

    it('gives back exactly the frames for any frames and any chunking (property)', () => {
      const frame = fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b.filter((x) => x !== EOT)).toString('latin1'))
      fc.assert(fc.property(fc.array(frame, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
        const bytes = wire(...frames.map((f) => Buffer.from(f, 'latin1')))
        expect(decode(bytes, cuts.map((c) => c % (bytes.length + 1)))).to.deep.equal(frames)
      }))
    })

    it('hands out a frame whole in one chunk as a view of that chunk, without copying', () => {
      const decoder = new FrameDecoder()
      const chunk = wire('abc', 'de')
      decoder.write(chunk)
      const first = decoder.next()!
      expect(first.buffer).to.equal(chunk.buffer)
      expect(first.byteOffset).to.equal(chunk.byteOffset)
      expect(decoder.next()!.byteOffset).to.equal(chunk.byteOffset + 4)
    })

    it('gathers a frame spread over chunks in a zero-filled buffer of its own, a new one per frame', () => {
      const decoder = new FrameDecoder()
      expect(drain(decoder, Buffer.from('ab'))).to.deep.equal([])
      expect(decoder.pendingLength).to.equal(2)
      const [first] = drain(decoder, Buffer.from('c\x04de'))
      expect(first).to.deep.equal(Buffer.from('abc'))
      // Unpooled and zero-filled: what lies past the frame in its memory is zeros, not others' bytes.
      const memory = Buffer.from(first!.buffer)
      expect(memory.subarray(3).every((b) => b === 0)).to.equal(true)
      expect(decoder.pendingLength).to.equal(2)
      const [second] = drain(decoder, Buffer.from('f\x04'))
      expect(second).to.deep.equal(Buffer.from('def'))
      expect(second!.buffer).not.to.equal(first!.buffer)
      expect(first).to.deep.equal(Buffer.from('abc'), 'the first frame is not overwritten by the next')
    })

    it('grows the pending buffer by doubling, never past the limit', () => {
      /** The size of the memory behind a frame of `length` bytes trickled in a byte at a time. */
      const memoryFor = (length: number, maxFrameLength?: number): number => {
        const decoder = new FrameDecoder({ maxFrameLength })
        for (let i = 0; i < length; i++) {
          drain(decoder, Buffer.from('x'))
          expect(decoder.pendingLength).to.equal(i + 1)
        }
        const [frame] = drain(decoder, Buffer.from([EOT]))
        expect(frame!.length).to.equal(length)
        return frame!.buffer.byteLength
      }
      expect(memoryFor(10)).to.equal(64)
      expect(memoryFor(65)).to.equal(128)
      expect(memoryFor(300)).to.equal(512)
      // Capped at the limit: 100, not 128.
      expect(memoryFor(100, 100)).to.equal(100)
    })

    it('holds a chunk until next() has cut it, and refuses a write meanwhile', () => {
      const decoder = new FrameDecoder()
      decoder.write(wire('a', 'b'))
      expect(decoder.holding).to.equal(true)
      expect(decoder.next()).to.deep.equal(Buffer.from('a'))
      expect(decoder.holding, 'another frame waits').to.equal(true)
      expectP2snErrorSync(() => { decoder.write(Buffer.from('c\x04')) }, 'ERR_P2SN_INVALID_ARGUMENT')
      expect(decoder.next()).to.deep.equal(Buffer.from('b'))
      expect(decoder.holding).to.equal(false)
      expect(decoder.next()).to.equal(undefined)
      expect(drain(decoder, Buffer.from('c\x04'))).to.deep.equal([Buffer.from('c')])
      expect(decoder.failed, 'a refused write is no failure').to.equal(false)
    })

    it('keeps the unterminated rest as soon as the last frame of a chunk is cut', () => {
      const decoder = new FrameDecoder()
      decoder.write(Buffer.from('a\x04bc'))
      expect(decoder.next()).to.deep.equal(Buffer.from('a'))
      expect(decoder.holding).to.equal(false)
      expect(decoder.pendingLength).to.equal(2)
    })
  })

  describe('limits', () => {
    it('accepts a frame of exactly the limit, whole or a byte at a time', () => {
      const frame = 'x'.repeat(8)
      expect(decode(wire(frame, frame), [], { maxFrameLength: 8 })).to.deep.equal([frame, frame])
      expect(decode(wire(frame, frame), 'byte', { maxFrameLength: 8 })).to.deep.equal([frame, frame])
    })

    it('defaults to DEFAULT_MAX_FRAME_LENGTH', () => {
      expect(new FrameDecoder().maxFrameLength).to.equal(DEFAULT_MAX_FRAME_LENGTH)
    })

    it('throws ERR_P2SN_FRAME_TOO_LONG at limit + 1 bytes trickled in, having buffered no more than the limit', () => {
      const decoder = new FrameDecoder({ maxFrameLength: 8 })
      for (let i = 0; i < 8; i++) expect(drain(decoder, Buffer.from('x'))).to.deep.equal([])
      expect(decoder.pendingLength).to.equal(8)
      decoder.write(Buffer.from('x'))
      const err = expectP2snErrorSync(() => decoder.next(), 'ERR_P2SN_FRAME_TOO_LONG')
      expect(err.message).to.contain('maxFrameLength (8 bytes)')
      expect(decoder.failed).to.equal(true)
      expect(decoder.refused).to.equal(false)
      expect(decoder.pendingLength).to.equal(0)
      expect(decoder.holding).to.equal(false)
    })

    it('throws for an unterminated chunk over the limit before copying any of it', () => {
      const decoder = new FrameDecoder({ maxFrameLength: 8 })
      decoder.write(Buffer.alloc(1024, 0x41))
      expectP2snErrorSync(() => decoder.next(), 'ERR_P2SN_FRAME_TOO_LONG')
      expect(decoder.pendingLength).to.equal(0)
    })

    it('hands out the good frames before an over-long one, then throws at the next call', () => {
      const decoder = new FrameDecoder({ maxFrameLength: 4 })
      decoder.write(Buffer.from('ok\x04fine\x04toolong'))
      expect(decoder.next()).to.deep.equal(Buffer.from('ok'))
      expect(decoder.next()).to.deep.equal(Buffer.from('fine'))
      expect(decoder.failed, 'not failed before it throws').to.equal(false)
      expectP2snErrorSync(() => decoder.next(), 'ERR_P2SN_FRAME_TOO_LONG')
      expect(decoder.failed).to.equal(true)
    })

    it('fails exactly when some frame is over the limit, for any chunking, never buffering past it (property)', () => {
      const frame = fc.string({ unit: fc.constantFrom('a', 'b'), maxLength: 12 })
      fc.assert(fc.property(fc.array(frame, { maxLength: 6 }), fc.nat({ max: 12 }), fc.array(fc.nat(), { maxLength: 10 }), (frames, limit, cuts) => {
        const bytes = wire(...frames)
        const plan = cuts.map((c) => c % (bytes.length + 1))
        if (frames.some((f) => f.length > limit)) expectP2snErrorSync(() => decode(bytes, plan, { maxFrameLength: limit }), 'ERR_P2SN_FRAME_TOO_LONG')
        else expect(decode(bytes, plan, { maxFrameLength: limit })).to.deep.equal(frames)
      }))
    })

    it('holds the leading frames to maxLeadingFrameLength and the rest to maxFrameLength', () => {
      const options = { maxFrameLength: 10, leadingFrames: 2, maxLeadingFrameLength: 3 }
      expect(decode(wire('abc', 'def', 'x'.repeat(10)), 'byte', options)).to.deep.equal(['abc', 'def', 'x'.repeat(10)])
      const err = expectP2snErrorSync(() => decode(wire('abc', 'defg'), 'byte', options), 'ERR_P2SN_FRAME_TOO_LONG')
      expect(err.message).to.contain('frame 2 is longer than the 3 bytes allowed at the start')
      expectP2snErrorSync(() => decode(wire('abc', 'def', 'x'.repeat(11)), [], options), 'ERR_P2SN_FRAME_TOO_LONG')
    })

    it('checks the rest of a chunk against the limit of the frame it starts, not the one before', () => {
      // The leading frame may hold 3 bytes; the rest after it starts a data frame, allowed 10.
      const decoder = new FrameDecoder({ maxFrameLength: 10, leadingFrames: 1, maxLeadingFrameLength: 3 })
      expect(drain(decoder, Buffer.from('abc\x04xxxxxxxx'))).to.deep.equal([Buffer.from('abc')])
      expect(decoder.pendingLength).to.equal(8)
    })

    for (const bad of [-1, 1.5, NaN, '8' as unknown as number]) {
      it(`rejects the limit ${typeof bad === 'string' ? `'${bad}'` : String(bad)} with ERR_P2SN_INVALID_ARGUMENT`, () => {
        expectP2snErrorSync(() => new FrameDecoder({ maxFrameLength: bad }), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => new FrameDecoder({ leadingFrames: bad }), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => new FrameDecoder({ maxLeadingFrameLength: bad }), 'ERR_P2SN_INVALID_ARGUMENT')
      })
    }
  })

  describe('refuseFramesOver', () => {
    it('throws the refusal for a data frame over the limit, checked as bytes arrive, then drops all', () => {
      const decoder = new FrameDecoder({ leadingFrames: 1, maxLeadingFrameLength: 5 })
      const refusal = new Error('refused')
      let calls = 0
      decoder.refuseFramesOver(3, () => { calls++; return refusal })
      expect(drain(decoder, Buffer.from('abcde\x04xyz\x04'))).to.deep.equal([Buffer.from('abcde'), Buffer.from('xyz')], 'the leading frame may be longer')
      expect(drain(decoder, Buffer.from('abc'))).to.deep.equal([])
      decoder.write(Buffer.from('d'))
      expect(thrown(() => decoder.next())).to.equal(refusal)
      expect(calls).to.equal(1)
      expect(decoder.failed).to.equal(true)
      expect(decoder.refused).to.equal(true)
      expect(drain(decoder, wire('ok', 'ok'))).to.deep.equal([])
      expect(() => { decoder.end() }, 'the end after a refusal is no truncation').not.to.throw()
      expect(calls).to.equal(1)
    })

    it('leaves maxFrameLength in force where it is lower, with its own error', () => {
      const decoder = new FrameDecoder({ maxFrameLength: 5 })
      decoder.refuseFramesOver(10, () => expect.fail('maxFrameLength is the lower limit'))
      decoder.write(wire('123456'))
      expectP2snErrorSync(() => decoder.next(), 'ERR_P2SN_FRAME_TOO_LONG')
      expect(decoder.refused).to.equal(false)
    })

    it('rejects a length below 1 with ERR_P2SN_INVALID_ARGUMENT', () => {
      expectP2snErrorSync(() => { new FrameDecoder().refuseFramesOver(0, () => new Error('x')) }, 'ERR_P2SN_INVALID_ARGUMENT')
    })
  })

  describe('end and reset', () => {
    it('ends quietly after a terminator, or with no input at all', () => {
      const decoder = new FrameDecoder()
      decoder.end()
      drain(decoder, wire('a'))
      expect(() => { decoder.end() }).not.to.throw()
    })

    it('throws ERR_P2SN_TRUNCATED when the input ends inside a frame, and drops it', () => {
      const decoder = new FrameDecoder()
      expect(drain(decoder, Buffer.from('a\x04bc'))).to.deep.equal([Buffer.from('a')])
      const err = expectP2snErrorSync(() => { decoder.end() }, 'ERR_P2SN_TRUNCATED')
      expect(err.message).to.contain('2 bytes after the last 0x04')
      expect(decoder.pendingLength).to.equal(0)
      expect(() => { decoder.end() }, 'once only').not.to.throw()
    })

    it('drops later writes once failed, and next() gives nothing', () => {
      const decoder = new FrameDecoder({ maxFrameLength: 2 })
      decoder.write(Buffer.from('abc'))
      expectP2snErrorSync(() => decoder.next(), 'ERR_P2SN_FRAME_TOO_LONG')
      decoder.write(wire('a', 'b'))
      expect(decoder.holding).to.equal(false)
      expect(decoder.next()).to.equal(undefined)
      expect(decoder.pendingLength).to.equal(0)
      expect(() => { decoder.end() }).not.to.throw()
    })

    it('reset() drops the held chunk and the pending bytes', () => {
      const decoder = new FrameDecoder()
      drain(decoder, Buffer.from('abc'))
      decoder.write(wire('x', 'y'))
      decoder.reset()
      expect(decoder.holding).to.equal(false)
      expect(decoder.pendingLength).to.equal(0)
      expect(() => { decoder.end() }).not.to.throw()
      expect(drain(decoder, wire('z'))).to.deep.equal([Buffer.from('z')])
    })
  })
})

describe('encodeFrame', () => {
  it('appends 0x04 to bytes, a view and a string (UTF-8)', () => {
    expect(encodeFrame(Buffer.from('hello'))).to.deep.equal(Buffer.from('hello\x04'))
    expect(encodeFrame(new Uint8Array([0x78, 0x61, 0x62, 0x78]).subarray(1, 3))).to.deep.equal(Buffer.from('ab\x04'))
    expect(encodeFrame('é')).to.deep.equal(Buffer.from([0xc3, 0xa9, EOT]))
    expect(encodeFrame('')).to.deep.equal(Buffer.from([EOT]))
  })

  it('copies: changing the frame afterwards does not change the bytes', () => {
    const frame = Buffer.from('ab')
    const bytes = encodeFrame(frame)
    frame[0] = 0x7a
    expect(bytes).to.deep.equal(Buffer.from('ab\x04'))
  })

  it('refuses a frame holding 0x04 anywhere with ERR_P2SN_INVALID_ARGUMENT', () => {
    for (const frame of [Buffer.from([EOT]), Buffer.from('a\x04b'), Buffer.from('ab\x04'), '\x04', 'x\x04']) {
      const err = expectP2snErrorSync(() => encodeFrame(frame), 'ERR_P2SN_INVALID_ARGUMENT')
      expect(err.message).to.contain('0x04 terminator')
    }
  })

  it('refuses what is neither bytes nor a string with ERR_P2SN_INVALID_ARGUMENT', () => {
    for (const value of [42, null, { length: 1 }, [0x61]]) {
      expectP2snErrorSync(() => encodeFrame(value as unknown as string), 'ERR_P2SN_INVALID_ARGUMENT')
    }
  })

  it('round-trips any frames through the decoder, any chunking (property)', () => {
    const frame = fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b.filter((x) => x !== EOT)))
    fc.assert(fc.property(fc.array(frame, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
      const bytes = Buffer.concat(frames.map(encodeFrame))
      expect(bytes.length).to.equal(frames.reduce((n, f) => n + f.length + 1, 0))
      const decoder = new FrameDecoder()
      const out: Buffer[] = []
      for (const chunk of rechunk(bytes, cuts.map((c) => c % (bytes.length + 1)))) out.push(...drain(decoder, chunk))
      decoder.end()
      expect(out).to.deep.equal(frames)
    }))
  })
})
