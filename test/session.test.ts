/**
 * SessionFrames, the frames after the handshake, with no I/O: messages, the peer's
 * `P2SN:ERRORKEY`, and in the authenticated mode the `P2SN:END` that must end each side's stream.
 */
import { expect } from 'chai'
import type { FrameStep } from '../lib/core/handshake.js'
import { END, SessionFrames } from '../lib/core/session.js'
import { KEYWORD_END, P2snError, type P2snErrorCode } from '../lib/index.js'
import { loadSessions, RECORDED_SESSION_NAMES } from './helpers/fixtures.js'

const ERRORKEY = Buffer.from('P2SN:ERRORKEY')
const MESSAGE = Buffer.from('aGVsbG8=')

/** A trace event as SessionFrames reports it. */
interface TraceEvent {
  direction: 'in'
  step: FrameStep
  frame: Buffer
}

/** Asserts that `result` is a P2snError carrying `code` (returned, not thrown). */
function expectError (result: boolean | P2snError | undefined, code: P2snErrorCode): P2snError {
  expect(result).to.be.an.instanceof(P2snError)
  expect((result as P2snError).code).to.equal(code)
  return result as P2snError
}

/** Frames that look like P2SN:END and are not. */
const NEAR_ENDS = ['P2SN:END ', ' P2SN:END', 'p2sn:end', 'P2SN:EN', 'P2SN:END\x00', 'P2SN:ENDX', 'P2SN:ENDKEY'].map((s) => Buffer.from(s, 'latin1'))

describe('SessionFrames', function () {
  it('END is P2SN:END', function () {
    expect(KEYWORD_END).to.equal('P2SN:END')
    expect(END.toString('latin1')).to.equal('P2SN:END')
  })

  describe('plain mode', function () {
    it('takes every frame but P2SN:ERRORKEY for a message, P2SN:END and the empty frame too', function () {
      const session = new SessionFrames(false)
      for (const frame of [MESSAGE, END, Buffer.alloc(0), Buffer.from('P2SN:PUBKEY'), Buffer.from('P2SN:KEYCHECK'), END, MESSAGE, ...NEAR_ENDS]) {
        expect(session.receive(frame), frame.toString('latin1')).to.equal(true)
      }
    })

    it('fails with ERR_P2SN_ERRORKEY on P2SN:ERRORKEY, returned, not thrown', function () {
      const session = new SessionFrames(false)
      expect(session.receive(MESSAGE)).to.equal(true)
      expectError(session.receive(ERRORKEY), 'ERR_P2SN_ERRORKEY')
    })

    it('only the exact keyword is a refusal: near misses are messages', function () {
      const session = new SessionFrames(false)
      for (const near of ['P2SN:ERRORKEY ', 'p2sn:errorkey', 'P2SN:ERRORKE', 'P2SN:ERRORKEY\x00']) {
        expect(session.receive(Buffer.from(near, 'latin1')), near).to.equal(true)
      }
    })

    it('has no last frame, and ends fine: at once, after messages, after P2SN:END', function () {
      expect(new SessionFrames(false).lastFrame).to.equal(undefined)
      expect(new SessionFrames(false).ended()).to.equal(undefined)
      const session = new SessionFrames(false)
      session.receive(MESSAGE)
      expect(session.ended()).to.equal(undefined)
      session.receive(END)
      expect(session.ended()).to.equal(undefined)
      expect(session.lastFrame).to.equal(undefined)
    })
  })

  describe('authenticated mode', function () {
    it('takes messages, then P2SN:END as the end (false), then ends fine', function () {
      const session = new SessionFrames(true)
      expect(session.receive(MESSAGE)).to.equal(true)
      expect(session.receive(Buffer.alloc(0)), 'an empty frame is a message').to.equal(true)
      for (const near of NEAR_ENDS) expect(session.receive(near), near.toString('latin1')).to.equal(true)
      expect(session.receive(END)).to.equal(false)
      expect(session.ended()).to.equal(undefined)
    })

    it('END as the very first frame is an empty stream, which ends fine', function () {
      const session = new SessionFrames(true)
      expect(session.receive(Buffer.from('P2SN:END'))).to.equal(false)
      expect(session.ended()).to.equal(undefined)
    })

    it('ended() without P2SN:END is ERR_P2SN_TRUNCATED: at once, after messages, after a near miss', function () {
      expectError(new SessionFrames(true).ended(), 'ERR_P2SN_TRUNCATED')
      const session = new SessionFrames(true)
      session.receive(MESSAGE)
      expectError(session.ended(), 'ERR_P2SN_TRUNCATED')
      const near = new SessionFrames(true)
      near.receive(Buffer.from('P2SN:END '))
      expectError(near.ended(), 'ERR_P2SN_TRUNCATED')
    })

    it('any frame after P2SN:END is ERR_P2SN_PROTOCOL: a message, an empty frame, END again', function () {
      for (const after of [MESSAGE, Buffer.alloc(0), END, NEAR_ENDS[0]!]) {
        const session = new SessionFrames(true)
        expect(session.receive(END)).to.equal(false)
        expectError(session.receive(after), 'ERR_P2SN_PROTOCOL')
        // And every frame after that too.
        expectError(session.receive(MESSAGE), 'ERR_P2SN_PROTOCOL')
      }
    })

    it('P2SN:ERRORKEY is ERR_P2SN_ERRORKEY, before P2SN:END and after it', function () {
      const before = new SessionFrames(true)
      expectError(before.receive(ERRORKEY), 'ERR_P2SN_ERRORKEY')
      const after = new SessionFrames(true)
      after.receive(END)
      expectError(after.receive(ERRORKEY), 'ERR_P2SN_ERRORKEY')
    })

    it('its last frame is P2SN:END', function () {
      const session = new SessionFrames(true)
      expect(session.lastFrame!.toString('latin1')).to.equal('P2SN:END')
      session.receive(END)
      expect(session.lastFrame!.toString('latin1')).to.equal('P2SN:END')
    })
  })

  describe('trace', function () {
    it('is told of each frame received, in order, with its step name and the frame itself', function () {
      const events: TraceEvent[] = []
      const session = new SessionFrames(true, (event) => { events.push(event) })
      const frames = [MESSAGE, NEAR_ENDS[0]!, END, MESSAGE]
      const results = frames.map((frame) => session.receive(frame))
      expect(results.slice(0, 3)).to.deep.equal([true, true, false])
      expectError(results[3], 'ERR_P2SN_PROTOCOL')
      expect(events.map((e) => [e.direction, e.step])).to.deep.equal([['in', 'message'], ['in', 'message'], ['in', 'END'], ['in', 'message']])
      events.forEach((event, i) => { expect(event.frame, `event ${i}`).to.equal(frames[i]) })
    })

    it('names P2SN:ERRORKEY, and in plain mode calls P2SN:END a message', function () {
      const events: TraceEvent[] = []
      const session = new SessionFrames(false, (event) => { events.push(event) })
      session.receive(END)
      session.receive(ERRORKEY)
      expect(events.map((e) => e.step)).to.deep.equal(['message', 'ERRORKEY'])
    })

    it('is not called by ended()', function () {
      const events: TraceEvent[] = []
      const session = new SessionFrames(true, (event) => { events.push(event) })
      session.ended()
      expect(events).to.deep.equal([])
    })
  })

  describe('the recorded Python sessions after their handshakes', function () {
    const sessions = loadSessions()

    it('finds all six recordings', function () {
      expect(sessions.map((s) => s.name)).to.deep.equal(RECORDED_SESSION_NAMES)
    })

    for (const session of sessions) {
      it(`${session.name}: every frame after step 6, on either side, is a message, but the reference's P2SN:ERRORKEY`, function () {
        const frames = session.wire.slice(6).map((f) => ({ from: f.from, frame: f.bytes.subarray(0, -1) }))
        expect(frames.length).to.be.greaterThan(0)
        const ours = { client: new SessionFrames(false), server: new SessionFrames(false) }
        let refusals = 0
        for (const { from, frame } of frames) {
          // Our side that receives the frame: the client gets the server's, and the other way round.
          const result = ours[from === 'server' ? 'client' : 'server'].receive(frame)
          if (frame.equals(ERRORKEY)) {
            expectError(result, 'ERR_P2SN_ERRORKEY')
            refusals++
          } else {
            expect(result, frame.toString('latin1')).to.equal(true)
          }
        }
        expect(refusals).to.equal(session.name === 'errorkey-1024' ? 1 : 0)
        expect(ours.client.ended()).to.equal(undefined)
        expect(ours.server.ended()).to.equal(undefined)
      })
    }
  })
})
