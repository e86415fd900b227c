import { createHmac } from 'node:crypto'
import { expect } from 'chai'
import fc from 'fast-check'
import { Hmac256 } from '../lib/sha256.js'

/** HMAC-SHA256 by node:crypto, the reference. */
function reference (key: Uint8Array, message: Uint8Array): Buffer {
  return createHmac('sha256', key).update(message).digest()
}

/** Deterministic bytes that differ with `seed`, so every length gets its own content. */
function bytes (length: number, seed: number): Buffer {
  const out = Buffer.alloc(length)
  let x = (seed * 2654435761 + 1) >>> 0
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    out[i] = x >>> 24
  }
  return out
}

function digestOf (hmac: Hmac256, message: Uint8Array): Buffer {
  const out = Buffer.alloc(32)
  hmac.digest(message, out)
  return out
}

/** Checks, as a fast-check property, that Hmac256 equals the reference for random keys of 0..64 bytes and messages of 0..`maxMessageLength` bytes. */
function agreesOnRandomInputs (maxMessageLength: number, numRuns: number): void {
  fc.assert(fc.property(
    fc.uint8Array({ minLength: 0, maxLength: 64 }),
    fc.uint8Array({ minLength: 0, maxLength: maxMessageLength }),
    (key, message) => {
      expect(digestOf(new Hmac256(key), message).equals(reference(key, message))).to.equal(true)
    }
  ), { numRuns })
}

describe('Hmac256 (sha256.ts)', function () {
  describe('equals node:crypto createHmac("sha256")', function () {
    it('for every key length 0..64 and every message length 0..55', function () {
      let checked = 0
      for (let keyLength = 0; keyLength <= 64; keyLength++) {
        const key = bytes(keyLength, keyLength)
        const hmac = new Hmac256(key)
        for (let messageLength = 0; messageLength <= 55; messageLength++) {
          const message = bytes(messageLength, 1000 + keyLength * 64 + messageLength)
          expect(digestOf(hmac, message).toString('hex'), `key ${keyLength} bytes, message ${messageLength} bytes`)
            .to.equal(reference(key, message).toString('hex'))
          checked++
        }
      }
      expect(checked).to.equal(65 * 56)
    })

    it('for random keys of 0..64 bytes and messages of 0..55 bytes (property)', function () {
      agreesOnRandomInputs(55, 2000)
    })

    it('for keys and messages of extreme bytes (all 0x00, all 0xff, the ipad and opad bytes)', function () {
      for (const fill of [0x00, 0xff, 0x36, 0x5c, 0x80]) {
        for (const keyLength of [0, 1, 32, 63, 64]) {
          for (const messageLength of [0, 1, 54, 55]) {
            const key = Buffer.alloc(keyLength, fill)
            const message = Buffer.alloc(messageLength, fill)
            expect(digestOf(new Hmac256(key), message).toString('hex'), `fill ${fill}, key ${keyLength}, message ${messageLength}`)
              .to.equal(reference(key, message).toString('hex'))
          }
        }
      }
    })

    it('matches the RFC 4231 test case 2 ("Jefe")', function () {
      const hmac = new Hmac256(Buffer.from('Jefe'))
      expect(digestOf(hmac, Buffer.from('what do ya want for nothing?')).toString('hex'))
        .to.equal('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843')
    })
  })

  describe('one instance', function () {
    it('gives the right digest for many messages in a row, whatever the order of their lengths', function () {
      const key = bytes(32, 7)
      const hmac = new Hmac256(key)
      // Long then short then long: a scratch word left over from a longer message would show.
      const lengths = [55, 0, 54, 1, 55, 3, 40, 11, 10, 55, 2, 0, 33, 55, 4, 52, 53, 5]
      for (let round = 0; round < 3; round++) {
        lengths.forEach((length, i) => {
          const message = bytes(length, round * 100 + i)
          expect(digestOf(hmac, message).toString('hex'), `round ${round}, message ${i} (${length} bytes)`)
            .to.equal(reference(key, message).toString('hex'))
        })
      }
    })

    it('gives the same digest for the same message every time', function () {
      const hmac = new Hmac256(bytes(64, 3))
      const message = bytes(11, 4)
      const first = digestOf(hmac, message)
      for (let i = 0; i < 100; i++) {
        digestOf(hmac, bytes(i % 56, i)) // something else in between
        expect(digestOf(hmac, message).equals(first)).to.equal(true)
      }
    })

    it('is independent of other instances (no shared state)', function () {
      const keyA = bytes(32, 10)
      const keyB = bytes(20, 11)
      const a = new Hmac256(keyA)
      const b = new Hmac256(keyB)
      for (let i = 0; i < 20; i++) {
        const message = bytes(i * 2, 50 + i)
        expect(digestOf(a, message).equals(reference(keyA, message))).to.equal(true)
        expect(digestOf(b, message).equals(reference(keyB, message))).to.equal(true)
      }
    })

    it('does not keep a reference to the key buffer (changing it afterwards changes nothing)', function () {
      const key = bytes(32, 12)
      const copy = Buffer.from(key)
      const hmac = new Hmac256(key)
      key.fill(0)
      const message = bytes(10, 13)
      expect(digestOf(hmac, message).equals(reference(copy, message))).to.equal(true)
    })

    it('does not change the message', function () {
      const hmac = new Hmac256(bytes(32, 14))
      const message = bytes(55, 15)
      const copy = Buffer.from(message)
      digestOf(hmac, message)
      expect(message.equals(copy)).to.equal(true)
    })
  })

  describe('setKey', function () {
    it('switches keys: each digest matches node:crypto under the current key, long keys then short ones', function () {
      const hmac = new Hmac256(bytes(64, 40))
      for (const [i, keyLength] of [64, 0, 63, 1, 32, 64, 5, 0].entries()) {
        const key = bytes(keyLength, 41 + i)
        hmac.setKey(key)
        for (const messageLength of [0, 11, 55]) {
          const message = bytes(messageLength, 60 + i)
          expect(digestOf(hmac, message).toString('hex'), `key ${i} (${keyLength} bytes), message ${messageLength} bytes`)
            .to.equal(reference(key, message).toString('hex'))
        }
      }
    })

    it('refuses a 65-byte key with a RangeError and keeps the key it had', function () {
      const key = bytes(32, 50)
      const hmac = new Hmac256(key)
      expect(() => hmac.setKey(Buffer.alloc(65, 1))).to.throw(RangeError)
      const message = bytes(10, 51)
      expect(digestOf(hmac, message).equals(reference(key, message))).to.equal(true)
    })
  })

  describe('digest(message, out, offset)', function () {
    it('writes the 32 bytes at the offset and touches nothing else', function () {
      const key = bytes(32, 20)
      const hmac = new Hmac256(key)
      const message = bytes(10, 21)
      const expected = reference(key, message)
      for (const offset of [0, 1, 7, 31, 32, 33, 68]) {
        const out = Buffer.alloc(offset + 32 + 5, 0xaa)
        hmac.digest(message, out, offset)
        expect(out.subarray(0, offset).every((b) => b === 0xaa), `bytes before offset ${offset}`).to.equal(true)
        expect(out.subarray(offset, offset + 32).toString('hex'), `digest at offset ${offset}`).to.equal(expected.toString('hex'))
        expect(out.subarray(offset + 32).every((b) => b === 0xaa), `bytes after offset ${offset}`).to.equal(true)
      }
    })

    it('defaults the offset to 0', function () {
      const hmac = new Hmac256(Buffer.alloc(0))
      const out = Buffer.alloc(40, 0xaa)
      hmac.digest(Buffer.alloc(0), out)
      expect(out.subarray(0, 32).equals(reference(Buffer.alloc(0), Buffer.alloc(0)))).to.equal(true)
      expect(out.subarray(32).every((b) => b === 0xaa)).to.equal(true)
    })

    it('fills consecutive blocks of one buffer, as a counter-mode PRF does', function () {
      const key = bytes(32, 22)
      const hmac = new Hmac256(key)
      const out = Buffer.alloc(32 * 8)
      const input = Buffer.from('\x00\x00message\x08\x00', 'latin1')
      for (let i = 0; i < 8; i++) {
        input.writeUInt16BE(i, 0)
        hmac.digest(input, out, i * 32)
      }
      for (let i = 0; i < 8; i++) {
        input.writeUInt16BE(i, 0)
        expect(out.subarray(i * 32, (i + 1) * 32).equals(reference(key, input)), `block ${i}`).to.equal(true)
      }
    })

    it('accepts a plain Uint8Array (not a Buffer) as message and output, and a message that is a view at an offset', function () {
      const key = bytes(16, 23)
      const hmac = new Hmac256(new Uint8Array(key))
      const backing = bytes(80, 24)
      const view = new Uint8Array(backing.buffer, backing.byteOffset + 13, 40)
      const out = new Uint8Array(32)
      hmac.digest(view, out)
      expect(Buffer.from(out).equals(reference(key, view))).to.equal(true)
    })
  })

  describe('limits', function () {
    it('accepts a 64-byte key and refuses a 65-byte key with a RangeError', function () {
      expect(() => new Hmac256(Buffer.alloc(64, 1))).not.to.throw()
      expect(() => new Hmac256(Buffer.alloc(65, 1))).to.throw(RangeError)
      expect(() => new Hmac256(Buffer.alloc(200, 1))).to.throw(RangeError)
    })

    it('takes messages of any length: every length 0..300 around the one- and two-block tails', function () {
      const key = bytes(32, 30)
      const hmac = new Hmac256(key)
      for (let length = 0; length <= 300; length++) {
        const message = bytes(length, length)
        expect(digestOf(hmac, message).equals(reference(key, message)), `length ${length}`).to.equal(true)
      }
    })

    it('takes long messages such as a 4096-bit ciphertext (property, 0..2048 bytes)', function () {
      agreesOnRandomInputs(2048, 200)
    })
  })

  describe('counterMode(label, bits, blocks, out)', function () {
    it('equals HMAC(key, uint16be(i) ‖ label ‖ uint16be(bits)) by node:crypto for each block', function () {
      fc.assert(fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 64 }), fc.uint8Array({ minLength: 0, maxLength: 51 }),
        fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 12 }),
        (key, label, bits, blocks) => {
          const out = Buffer.alloc(blocks * 32)
          new Hmac256(key).counterMode(label, bits, blocks, out)
          for (let i = 0; i < blocks; i++) {
            const message = Buffer.concat([Buffer.from([i >> 8, i & 0xff]), label, Buffer.from([bits >> 8, bits & 0xff])])
            expect(out.subarray(i * 32, (i + 1) * 32).equals(reference(key, message)), `block ${i}`).to.equal(true)
          }
        }
      ), { numRuns: 100 })
    })

    it('refuses a label longer than 51 bytes with a RangeError', function () {
      expect(() => new Hmac256(Buffer.alloc(32)).counterMode(Buffer.alloc(52), 8, 1, Buffer.alloc(32))).to.throw(RangeError)
    })
  })
})
