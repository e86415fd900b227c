/**
 * MessageTransform, the shape of the per-message layers: in particular `concurrency`, which
 * lets a pooled decryptor keep several messages in worker threads while keeping their order.
 */
import { expect } from 'chai'
import { P2snError } from '../lib/index.js'
import { MessageTransform } from '../lib/message-transform.js'
import { expectP2snErrorSync } from './helpers/errors.js'
import { delay, settle, within } from './helpers/timing.js'

/** An asynchronous apply that finishes after a random few milliseconds, and counts what runs at once. */
function slowUpper (): { apply: (message: Buffer) => Promise<Buffer>, started: () => number, mostAtOnce: () => number } {
  let running = 0
  let most = 0
  let started = 0
  return {
    apply: async (message) => {
      started++
      most = Math.max(most, ++running)
      await delay(Math.floor(Math.random() * 6))
      running--
      return Buffer.from(message.toString().toUpperCase())
    },
    started: () => started,
    mostAtOnce: () => most
  }
}

/** Writes `messages`, ends, and collects what comes out until 'end' (or the error). */
async function run (stream: MessageTransform, messages: string[]): Promise<{ out: string[], error: unknown }> {
  const out: string[] = []
  let error: unknown
  stream.on('data', (message: Buffer) => out.push(message.toString()))
  const done = new Promise<void>((resolve) => {
    stream.on('end', resolve)
    stream.on('error', (err) => { error = err; resolve() })
  })
  for (const message of messages) stream.write(message)
  stream.end()
  await done
  return { out, error }
}

const MESSAGES = Array.from({ length: 40 }, (_, i) => `message ${i}`)

describe('MessageTransform (message-transform.ts)', function () {
  describe('concurrency', function () {
    it('runs up to that many at once, and the results come out in the order the messages went in', async () => {
      const slow = slowUpper()
      const { out, error } = await run(new MessageTransform(slow.apply, { concurrency: 4 }), MESSAGES)
      expect(error).to.equal(undefined)
      expect(out).to.deep.equal(MESSAGES.map((m) => m.toUpperCase()))
      expect(slow.mostAtOnce()).to.equal(4)
    })

    it('1 (the default) waits for each before the next', async () => {
      const slow = slowUpper()
      const { out } = await run(new MessageTransform(slow.apply), MESSAGES)
      expect(out).to.deep.equal(MESSAGES.map((m) => m.toUpperCase()))
      expect(slow.mostAtOnce()).to.equal(1)
    })

    it('keeps to backpressure: a reader that stops reading stops the work after a few messages', async () => {
      const slow = slowUpper()
      const stream = new MessageTransform(slow.apply, { concurrency: 4 })
      let accepted = 0
      for (let i = 0; i < 100; i++) {
        accepted++
        if (!stream.write(`m${i}`)) break
      }
      await delay(50)
      // Nobody reads: the work started is bounded by the slots, the readable side and the
      // writable buffer, not by what was written.
      expect(accepted).to.be.below(100)
      expect(slow.started()).to.be.at.most(4 + 2 + 2)
      // Reading again lets every message written through.
      const out: string[] = []
      await within(2000, new Promise<void>((resolve) => {
        stream.on('data', (message: Buffer) => { if (out.push(message.toString()) === accepted) resolve() })
      }), 'the messages held back')
      expect(out).to.deep.equal(Array.from({ length: accepted }, (_, i) => `M${i}`))
    })

    it('a reader that pauses and resumes at random gets every message, in order, and nothing stalls', async () => {
      for (let round = 0; round < 10; round++) {
        const slow = slowUpper()
        const stream = new MessageTransform(slow.apply, { concurrency: 1 + (round % 5) })
        const messages = Array.from({ length: 120 }, (_, i) => `r${round} m${i}`)
        const out: string[] = []
        const ended = new Promise<void>((resolve) => stream.on('end', resolve))
        stream.on('data', (message: Buffer) => {
          out.push(message.toString())
          if (Math.random() < 0.2) {
            stream.pause()
            setTimeout(() => stream.resume(), Math.floor(Math.random() * 4))
          }
        })
        const writing = (async () => {
          for (const message of messages) if (!stream.write(message)) await new Promise((resolve) => stream.once('drain', resolve))
          stream.end()
        })()
        await within(5000, Promise.all([writing, ended]), `round ${round}`)
        expect(out).to.deep.equal(messages.map((m) => m.toUpperCase()))
      }
    })

    it('a failure fails the stream after the results before it, and nothing after it comes out', async () => {
      const slow = slowUpper()
      const failing = async (message: Buffer): Promise<Buffer> => {
        if (message.toString() === 'message 10') {
          await delay(3)
          throw new P2snError('ERR_P2SN_DECRYPT', 'bad')
        }
        return slow.apply(message)
      }
      const { out, error } = await run(new MessageTransform(failing, { concurrency: 4 }), MESSAGES)
      expect(error).to.be.instanceOf(P2snError).with.property('code', 'ERR_P2SN_DECRYPT')
      expect(out).to.deep.equal(MESSAGES.slice(0, 10).map((m) => m.toUpperCase()))
    })

    it('a synchronous throw among asynchronous results keeps its place in line', async () => {
      const slow = slowUpper()
      const mixed = (message: Buffer): Promise<Buffer> => {
        if (message.toString() === 'message 5') throw new P2snError('ERR_P2SN_DECRYPT', 'bad')
        return slow.apply(message)
      }
      const { out, error } = await run(new MessageTransform(mixed, { concurrency: 3 }), MESSAGES)
      expect((error as P2snError).code).to.equal('ERR_P2SN_DECRYPT')
      expect(out).to.deep.equal(MESSAGES.slice(0, 5).map((m) => m.toUpperCase()))
    })

    it('a public failure goes to onInvalid and its message is dropped; the rest come out in order', async () => {
      const slow = slowUpper()
      const invalid: string[] = []
      const apply = async (message: Buffer): Promise<Buffer> => {
        if (message.toString().endsWith('7')) throw new P2snError('ERR_P2SN_BAD_BASE64', 'not base64')
        return slow.apply(message)
      }
      const stream = new MessageTransform(apply, { concurrency: 4, onInvalid: (err) => { invalid.push(err.code) } })
      const { out, error } = await run(stream, MESSAGES)
      expect(error).to.equal(undefined)
      expect(out).to.deep.equal(MESSAGES.filter((m) => !m.endsWith('7')).map((m) => m.toUpperCase()))
      expect(invalid).to.deep.equal(['ERR_P2SN_BAD_BASE64', 'ERR_P2SN_BAD_BASE64', 'ERR_P2SN_BAD_BASE64', 'ERR_P2SN_BAD_BASE64'])
    })

    it('a \'data\' listener that throws fails the stream with its error, not an unhandled rejection', async () => {
      const stream = new MessageTransform(async (message) => { await delay(1); return message }, { concurrency: 2 })
      const failure = new Error('listener failed')
      stream.on('data', (message: Buffer) => { if (message.toString() === 'b') throw failure })
      const errored = new Promise((resolve) => stream.once('error', resolve))
      stream.write('a')
      stream.write('b')
      expect(await within(2000, errored, 'the error')).to.equal(failure)
    })

    it('end() ends the readable side only once every message in flight is out', async () => {
      const stream = new MessageTransform(async (message) => { await delay(20); return message }, { concurrency: 4 })
      const { out } = await run(stream, ['a', 'b', 'c'])
      expect(out).to.deep.equal(['a', 'b', 'c'])
    })

    it('destroy() with messages in flight: nothing comes out after, and no error', async () => {
      const stream = new MessageTransform(async (message) => { await delay(10); return message }, { concurrency: 4 })
      const out: string[] = []
      const errors: unknown[] = []
      stream.on('data', (message: Buffer) => out.push(message.toString()))
      stream.on('error', (err) => errors.push(err))
      stream.write('a')
      stream.write('b')
      await settle()
      stream.destroy()
      await delay(30)
      expect(out).to.deep.equal([])
      expect(errors).to.deep.equal([])
    })

    it('1, with results now at once and now a Promise (a decryptor\'s one-block and longer messages): in order, one at a time', async () => {
      let running = 0
      let most = 0
      const mixed = (message: Buffer): Buffer | Promise<Buffer> => {
        const text = message.toString()
        if (text.endsWith('bad')) return Promise.reject(new P2snError('ERR_P2SN_MESSAGE_TOO_LONG', 'too long'))
        if (!text.startsWith('long')) return Buffer.from(text.toUpperCase())
        most = Math.max(most, ++running)
        return delay(Math.floor(Math.random() * 4)).then(() => { running--; return Buffer.from(text.toUpperCase()) })
      }
      const invalid: string[] = []
      const messages = Array.from({ length: 60 }, (_, i) => i % 3 === 0 ? `long ${i}` : i % 7 === 0 ? `short ${i} bad` : `short ${i}`)
      const { out, error } = await run(new MessageTransform(mixed, { onInvalid: (err) => { invalid.push(err.code) } }), messages)
      expect(error).to.equal(undefined)
      expect(out).to.deep.equal(messages.filter((m) => !m.endsWith('bad')).map((m) => m.toUpperCase()))
      expect(invalid).to.have.length(messages.filter((m) => m.endsWith('bad')).length)
      expect(most).to.equal(1)
    })

    it('must be a whole number of at least 1: ERR_P2SN_INVALID_ARGUMENT', () => {
      for (const concurrency of [0, 1.5, -1, Number.NaN]) {
        expectP2snErrorSync(() => new MessageTransform((m) => m, { concurrency }), 'ERR_P2SN_INVALID_ARGUMENT')
      }
    })
  })
})
