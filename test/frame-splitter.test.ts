import { expect } from 'chai'
import { once } from 'node:events'
import fc from 'fast-check'
import { DEFAULT_MAX_FRAME_LENGTH, FrameSplitter } from '../lib/index.js'
import { collect, expectQuietDestroy, rechunk, seededRandom } from './helpers/chunking.js'
import { expectP2snError } from './helpers/errors.js'
import { inUse } from './helpers/memory.js'
import { settle, within } from './helpers/timing.js'

const EOT = 0x04

/** `frames` each followed by 0x04, as one buffer. */
function wire (...frames: Array<string | Uint8Array>): Buffer {
  return Buffer.concat(frames.flatMap((f) => [Buffer.from(f), Buffer.from([EOT])]))
}

/** The frames a fresh splitter gives for `chunks`, as strings. */
async function split (chunks: Iterable<unknown>, maxFrameLength?: number): Promise<string[]> {
  const frames = await collect(new FrameSplitter({ maxFrameLength }), chunks)
  for (const frame of frames) expect(Buffer.isBuffer(frame)).to.equal(true)
  return frames.map((f) => f.toString('latin1'))
}

describe('FrameSplitter', () => {
  describe('splitting', () => {
    it('emits a single frame without its terminator', async () => {
      const frames = await collect(new FrameSplitter(), [wire('hello')])
      expect(frames).to.have.length(1)
      expect(frames[0]).to.deep.equal(Buffer.from('hello'))
    })

    it('emits many frames from one chunk, in order', async () => {
      expect(await split([wire('a', 'bc', 'def', 'ghij')])).to.deep.equal(['a', 'bc', 'def', 'ghij'])
    })

    it('joins a frame split across a chunk boundary, at every position', async () => {
      const bytes = wire('hello', 'world')
      for (let cut = 0; cut <= bytes.length; cut++) {
        const frames = await split([bytes.subarray(0, cut), bytes.subarray(cut)])
        expect(frames, `cut at ${cut}`).to.deep.equal(['hello', 'world'])
      }
    })

    it('joins a frame spread over many chunks', async () => {
      expect(await split(['ab', 'cd', 'ef', Buffer.from([EOT])])).to.deep.equal(['abcdef'])
    })

    it('handles a terminator as the last byte of a chunk', async () => {
      expect(await split([Buffer.from('ab\x04'), Buffer.from('cd\x04')])).to.deep.equal(['ab', 'cd'])
    })

    it('handles a terminator as the first byte of a chunk', async () => {
      expect(await split([Buffer.from('ab'), Buffer.from('\x04cd'), Buffer.from('\x04')])).to.deep.equal(['ab', 'cd'])
    })

    it('handles a chunk that is only a terminator', async () => {
      expect(await split([Buffer.from('ab'), Buffer.from([EOT]), Buffer.from('cd'), Buffer.from([EOT])])).to.deep.equal(['ab', 'cd'])
    })

    it('emits an empty Buffer for each empty frame (consecutive 0x04s)', async () => {
      const frames = await collect(new FrameSplitter(), [Buffer.from([EOT, EOT, 0x61, EOT, EOT])])
      expect(frames).to.deep.equal([Buffer.alloc(0), Buffer.alloc(0), Buffer.from('a'), Buffer.alloc(0)])
      for (const frame of frames) expect(Buffer.isBuffer(frame)).to.equal(true)
    })

    it('emits empty frames when the 0x04s arrive in separate chunks', async () => {
      expect(await split([Buffer.from([EOT]), Buffer.from([EOT])])).to.deep.equal(['', ''])
    })

    it('splits input written a byte at a time', async () => {
      expect(await split(rechunk(wire('P2SN:PUBKEY', '', 'QUJD'), 'byte'))).to.deep.equal(['P2SN:PUBKEY', '', 'QUJD'])
    })

    it('keeps every byte value other than 0x04 intact', async () => {
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== EOT))
      const frames = await collect(new FrameSplitter(), rechunk(wire(all, all), seededRandom(1)))
      expect(frames).to.deep.equal([all, all])
    })

    it('gives back exactly the frames for any frames and any chunking (property)', async () => {
      const frame = fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b.filter((x) => x !== EOT)))
      await fc.assert(fc.asyncProperty(fc.array(frame, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), async (frames, cuts) => {
        const bytes = wire(...frames)
        const out = await collect(new FrameSplitter(), rechunk(bytes, cuts.map((c) => c % (bytes.length + 1))))
        expect(out).to.deep.equal(frames)
      }))
    })
  })

  describe('end of input', () => {
    it('ends quietly right after a terminator', async () => {
      expect(await split([wire('a', 'b')])).to.deep.equal(['a', 'b'])
    })

    it('ends quietly with no input at all', async () => {
      expect(await split([])).to.deep.equal([])
    })

    it('fails with ERR_P2SN_TRUNCATED when the input ends mid-frame', async () => {
      await expectP2snError(split([wire('a'), Buffer.from('bc')]), 'ERR_P2SN_TRUNCATED')
    })

    it('fails with ERR_P2SN_TRUNCATED for a single unterminated byte', async () => {
      await expectP2snError(split([Buffer.from('x')]), 'ERR_P2SN_TRUNCATED')
    })

    it('still emits the complete frames before the truncated one', async () => {
      const splitter = new FrameSplitter()
      const frames: string[] = []
      splitter.on('data', (f: Buffer) => { frames.push(f.toString()) })
      await expectP2snError(collect(splitter, [wire('a', 'b'), Buffer.from('c')]), 'ERR_P2SN_TRUNCATED')
      expect(frames).to.deep.equal(['a', 'b'])
    })
  })

  describe('maxFrameLength', () => {
    it('defaults to DEFAULT_MAX_FRAME_LENGTH (1 MiB)', () => {
      expect(new FrameSplitter().maxFrameLength).to.equal(DEFAULT_MAX_FRAME_LENGTH)
      expect(DEFAULT_MAX_FRAME_LENGTH).to.equal(1024 * 1024)
    })

    it('accepts a frame of exactly the limit in one chunk', async () => {
      expect(await split([wire('x'.repeat(8))], 8)).to.deep.equal(['x'.repeat(8)])
    })

    it('accepts a frame of exactly the limit spread over chunks', async () => {
      expect(await split(rechunk(wire('x'.repeat(8), 'y'.repeat(8)), 'byte'), 8)).to.deep.equal(['x'.repeat(8), 'y'.repeat(8)])
    })

    it('accepts a frame of exactly the default limit', async () => {
      const big = Buffer.alloc(DEFAULT_MAX_FRAME_LENGTH, 0x41)
      const frames = await collect(new FrameSplitter(), [big, Buffer.from([EOT])])
      expect(frames).to.have.length(1)
      expect(frames[0]?.length).to.equal(DEFAULT_MAX_FRAME_LENGTH)
    })

    it('fails one byte over the limit when the terminator is in the same chunk', async () => {
      await expectP2snError(split([wire('x'.repeat(9))], 8), 'ERR_P2SN_FRAME_TOO_LONG')
    })

    it('fails one byte over the limit when the frame started in an earlier chunk', async () => {
      await expectP2snError(split([Buffer.from('x'.repeat(8)), Buffer.from('x\x04')], 8), 'ERR_P2SN_FRAME_TOO_LONG')
    })

    it('fails for an over-long frame that follows good frames in the same chunk', async () => {
      await expectP2snError(split([wire('ok', 'x'.repeat(9), 'ok')], 8), 'ERR_P2SN_FRAME_TOO_LONG')
    })

    it('fails as soon as limit + 1 bytes arrive in one chunk, with no terminator and no end', async () => {
      const splitter = new FrameSplitter({ maxFrameLength: 8 })
      const errors: unknown[] = []
      splitter.on('error', (err) => { errors.push(err) })
      splitter.write(Buffer.from('x'.repeat(9)))
      await settle()
      expect(errors).to.have.length(1)
      await expectP2snError(Promise.reject(errors[0]), 'ERR_P2SN_FRAME_TOO_LONG')
      expect(splitter.writableEnded).to.equal(false)
    })

    it('fails as soon as limit + 1 bytes arrive a byte at a time, with no terminator and no end', async () => {
      const splitter = new FrameSplitter({ maxFrameLength: 8 })
      const errors: unknown[] = []
      splitter.on('error', (err) => { errors.push(err) })
      for (let i = 0; i < 8; i++) splitter.write(Buffer.from('x'))
      await settle()
      expect(errors, 'no error at exactly the limit').to.deep.equal([])
      splitter.write(Buffer.from('x'))
      await settle()
      expect(errors).to.have.length(1)
      await expectP2snError(Promise.reject(errors[0]), 'ERR_P2SN_FRAME_TOO_LONG')
      expect(splitter.writableEnded).to.equal(false)
    })

    it('with a limit of 0, accepts only empty frames', async () => {
      expect(await split([Buffer.from([EOT, EOT])], 0)).to.deep.equal(['', ''])
      await expectP2snError(split([Buffer.from('a')], 0), 'ERR_P2SN_FRAME_TOO_LONG')
    })

    it('accepts Infinity as no limit', async () => {
      expect(new FrameSplitter({ maxFrameLength: Infinity }).maxFrameLength).to.equal(Infinity)
      expect(await split([wire('x'.repeat(100))], Infinity)).to.deep.equal(['x'.repeat(100)])
    })

    it('fails exactly when some frame is over the limit, for any chunking (property)', async () => {
      const frame = fc.string({ unit: fc.constantFrom('a', 'b'), maxLength: 12 })
      await fc.assert(fc.asyncProperty(fc.array(frame, { maxLength: 6 }), fc.nat({ max: 12 }), fc.array(fc.nat(), { maxLength: 10 }), async (frames, limit, cuts) => {
        const bytes = wire(...frames)
        const run = split(rechunk(bytes, cuts.map((c) => c % (bytes.length + 1))), limit)
        if (frames.some((f) => f.length > limit)) await expectP2snError(run, 'ERR_P2SN_FRAME_TOO_LONG')
        else expect(await run).to.deep.equal(frames)
      }))
    })

    for (const bad of [-1, 1.5, NaN, -Infinity, Number.MAX_SAFE_INTEGER + 2, '8' as unknown as number]) {
      it(`rejects maxFrameLength ${typeof bad === 'string' ? `'${bad}'` : String(bad)} with ERR_P2SN_INVALID_ARGUMENT`, async () => {
        await expectP2snError(() => new FrameSplitter({ maxFrameLength: bad }), 'ERR_P2SN_INVALID_ARGUMENT')
      })
    }
  })

  describe('refuseFramesOver', () => {
    it('drops a data frame over the limit and all after it, and calls its owner once, with no error', async () => {
      const splitter = new FrameSplitter({ leadingFrames: 1, maxLeadingFrameLength: 4 })
      let refused = 0
      splitter.refuseFramesOver(3, () => { refused++ })
      const frames = await collect(splitter, rechunk(wire('abcd', 'xyz', 'toolong', 'ok'), 'byte'))
      expect(frames.map((f) => f.toString())).to.deep.equal(['abcd', 'xyz'])
      expect(refused).to.equal(1)
    })

    it('checks as bytes arrive: a frame with no terminator is refused past the limit, and the end is no truncation', async () => {
      const splitter = new FrameSplitter()
      let refused = 0
      splitter.refuseFramesOver(10, () => { refused++ })
      const frames = await collect(splitter, [Buffer.alloc(11, 0x41), Buffer.alloc(1024, 0x41)])
      expect(frames).to.deep.equal([])
      expect(refused).to.equal(1)
    })

    it('leaves maxFrameLength in force where it is lower', async () => {
      const splitter = new FrameSplitter({ maxFrameLength: 5 })
      splitter.refuseFramesOver(10, () => { expect.fail('maxFrameLength is the lower limit') })
      await expectP2snError(collect(splitter, [wire('123456')]), 'ERR_P2SN_FRAME_TOO_LONG')
    })
  })

  describe('destroy', () => {
    it('closes without an error on a plain destroy()', async () => {
      await expectQuietDestroy(new FrameSplitter())
    })

    it('closes without an error on a plain destroy() mid-frame', async () => {
      await expectQuietDestroy(new FrameSplitter(), [Buffer.from('half a fra')])
    })

    it('closes without an error on a plain destroy() while it holds a chunk nobody read', async () => {
      await expectQuietDestroy(new FrameSplitter(), [Buffer.alloc(100, EOT), Buffer.from('ab')])
    })
  })

  describe('backpressure and memory', () => {
    it('holds a 64 KiB chunk of 0x04 nobody reads: a few frames buffered, the write not called back until they are read', async () => {
      const splitter = new FrameSplitter()
      let read = 0
      let readWhenWritten: number | undefined
      splitter.write(Buffer.alloc(64 * 1024, EOT), () => { readWhenWritten = read })
      await settle(3)
      expect(splitter.readableLength).to.be.at.most(splitter.readableHighWaterMark)
      expect(readWhenWritten, 'the write was called back before anything was read').to.equal(undefined)
      splitter.on('data', () => { read++ })
      const frames = await within(10_000, collect(splitter, []), 'the end of the frames')
      expect(frames).to.have.length(64 * 1024)
      expect(frames.every((frame) => Buffer.isBuffer(frame) && frame.length === 0), 'every frame an empty Buffer').to.equal(true)
      // Called back once the last frames were pushed, not before: only those may be unread.
      expect(readWhenWritten).to.be.at.least(64 * 1024 - splitter.readableHighWaterMark - 1)
    })

    it('keeps a 1 MiB frame trickled in a byte at a time in about its own length of memory', async function () {
      // Without gc, inUse() would count what is still to collect.
      if (globalThis.gc === undefined) {
        this.test!.title += ' (skipped: needs global.gc; run node with --expose-gc)'
        this.skip()
      }
      const length = DEFAULT_MAX_FRAME_LENGTH - 1
      const source = Buffer.alloc(length, 0x41)
      const splitter = new FrameSplitter()
      const frames: Buffer[] = []
      splitter.on('data', (frame: Buffer) => { frames.push(frame) })
      const before = inUse()
      for (let i = 0; i < length; i++) splitter.write(source.subarray(i, i + 1))
      await settle()
      const held = inUse() - before
      expect(held, `${held} bytes held for ${length} bytes pending`).to.be.below(3 * length)
      splitter.end(Buffer.from([EOT]))
      await once(splitter, 'end')
      expect(frames).to.have.length(1)
      expect(frames[0]!.equals(source)).to.equal(true)
    })

    /**
     * Feeds numbered frames (and empty ones) in chunks of random size, many frames to a chunk,
     * to a splitter paused, resumed and read() at random, by a driver and by its own 'data'
     * listener; returns the frames read, as strings, with those expected.
     */
    async function stress (seed: number): Promise<{ got: string[], expected: string[] }> {
      const random = seededRandom(seed)
      const expected = Array.from({ length: 3000 }, (_, i) => random() < 0.1 ? '' : `${i}:${'x'.repeat(Math.floor(random() * 24))}`)
      const bytes = wire(...expected)
      const cuts: number[] = []
      for (let at = 0; at < bytes.length; at += 1 + Math.floor(random() * 600)) cuts.push(at)
      const splitter = new FrameSplitter()
      const got: string[] = []
      let nested = 0
      splitter.on('data', (frame: Buffer) => {
        got.push(frame.toString('latin1'))
        // As pipe() does when its destination is full, and a listener that reads on its own.
        const r = random()
        if (r < 0.05) splitter.pause()
        else if (r < 0.1 && nested < 3) {
          nested++
          splitter.read()
          nested--
        }
      })
      const ended = once(splitter, 'end')
      let done = false
      void ended.then(() => { done = true }, () => { done = true })
      const writer = (async () => {
        for (const chunk of rechunk(bytes, cuts)) {
          if (!splitter.write(chunk) && random() < 0.5) await once(splitter, 'drain')
        }
        splitter.end()
      })()
      const driver = (async () => {
        while (!done) {
          const r = random()
          if (r < 0.3) splitter.pause()
          else if (r < 0.5) splitter.resume()
          else if (r < 0.9) for (let i = Math.floor(random() * 4); i >= 0; i--) splitter.read()
          // A chunk written while the buffer is full still pushes one frame: a read asked for
          // since the last push may be waiting for it.
          expect(splitter.readableLength).to.be.at.most(splitter.readableHighWaterMark + 1)
          await settle()
        }
      })()
      try {
        await within(10_000, Promise.all([ended, writer, driver]), `the end of the input (seed ${seed})`)
      } finally {
        done = true // a stalled run stops its driver too
      }
      return { got, expected }
    }

    it('loses, repeats and reorders no frame and never stalls, paused, resumed and read at random (seeded)', async () => {
      for (let seed = 1; seed <= 8; seed++) {
        const { got, expected } = await stress(seed)
        expect(got, `seed ${seed}`).to.deep.equal(expected)
      }
    })
  })
})
