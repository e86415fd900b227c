import crypto from 'node:crypto'
import { expect } from 'chai'
import fc from 'fast-check'
import { decryptMessage, generateKeyPair, parsePrivateKey, type KeyPair, type PrivateKey } from '../lib/index.js'
import { encodes, unpadImplicit } from '../lib/implicit-rejection.js'
import { encodedMessage, rawEncrypt } from './helpers/ciphertext-classes.js'
import { expectP2snErrorSync } from './helpers/errors.js'
import { loadRejectionFamilies, loadWycheproof, type WycheproofGroup, type WycheproofTest } from './helpers/fixtures.js'

const ENGINES = ['openssl', 'forge'] as const
type Engine = (typeof ENGINES)[number]

function hmac (key: Uint8Array, data: Uint8Array): Buffer {
  return crypto.createHmac('sha256', key).update(data).digest()
}

/**
 * The draft's algorithm written the plain, branching way (the README of the fixtures, steps 2–6),
 * as a reference for the constant-time code.
 */
function referenceUnpad (em: Buffer, ciphertext: Buffer, rejectionKey: Buffer): { message: Buffer, valid: number } {
  const k = em.length
  const kdk = hmac(rejectionKey, ciphertext)
  const prf = (label: string, length: number): Buffer => {
    const parts: Buffer[] = []
    const bitLength = Buffer.alloc(2)
    bitLength.writeUInt16BE(length * 8)
    for (let i = 0; parts.length * 32 < length; i++) {
      const counter = Buffer.alloc(2)
      counter.writeUInt16BE(i)
      parts.push(hmac(kdk, Buffer.concat([counter, Buffer.from(label, 'ascii'), bitLength])))
    }
    return Buffer.concat(parts).subarray(0, length)
  }
  const synthetic = prf('message', k)
  const candidates = prf('length', 256)
  const max = k - 10
  const mask = 2 ** max.toString(2).length - 1
  let syntheticLength = 0
  for (let i = 0; i < 128; i++) {
    const candidate = candidates.readUInt16BE(2 * i) & mask
    if (candidate < max) syntheticLength = candidate
  }
  const zeroIndex = em.indexOf(0, 2)
  if (em[0] === 0 && em[1] === 2 && zeroIndex >= 10) return { message: Buffer.from(em.subarray(zeroIndex + 1)), valid: 1 }
  return { message: Buffer.from(synthetic.subarray(k - syntheticLength)), valid: 0 }
}

describe('implicit rejection', function () {
  describe('unpadImplicit on hand-built encoded messages', function () {
    const k = 128
    const ciphertext = crypto.randomBytes(k)
    const rejectionKey = crypto.randomBytes(32)
    const synthetic = referenceUnpad(Buffer.alloc(k), ciphertext, rejectionKey).message

    /** Unpads a copy of `em` and checks it against the reference too. */
    function unpad (em: Buffer): { message: Buffer, valid: number } {
      const result = unpadImplicit(Buffer.from(em), ciphertext, rejectionKey)
      const expected = referenceUnpad(em, ciphertext, rejectionKey)
      expect(result.valid, 'valid agrees with the reference').to.equal(expected.valid)
      expect(result.message.toString('hex'), 'message agrees with the reference').to.equal(expected.message.toString('hex'))
      return result
    }

    /** Asserts that `em` is rejected: valid 0 and the synthetic message. */
    function expectRejected (em: Buffer, what?: string): void {
      const result = unpad(em)
      expect(result.valid, what).to.equal(0)
      expect(result.message.equals(synthetic), what).to.equal(true)
    }

    /** A well-formed block (8 bytes of padding, a k − 11 byte message) with byte `index` set to `value`. */
    function wellFormedBut (index: number, value: number): Buffer {
      const em = encodedMessage(k, 8, Buffer.alloc(k - 11, 0x61))
      em[index] = value
      return em
    }

    it('accepts 00 02, 8 bytes of padding, 00, message: valid 1 and the message', function () {
      const message = Buffer.alloc(k - 11, 0x61)
      const result = unpad(encodedMessage(k, 8, message))
      expect(result.valid).to.equal(1)
      expect(result.message.equals(message)).to.equal(true)
    })

    it('accepts longer padding and shorter messages, down to an empty message', function () {
      for (const length of [0, 1, 2, 50, k - 12]) {
        const message = crypto.randomBytes(length)
        const result = unpad(encodedMessage(k, k - 3 - length, message))
        expect(result.valid, `message of ${length} bytes`).to.equal(1)
        expect(result.message.equals(message), `message of ${length} bytes`).to.equal(true)
      }
    })

    it('accepts a message that holds zero bytes (only the first zero ends the padding)', function () {
      const message = Buffer.from([0, 0, 1, 0, 2])
      const result = unpad(encodedMessage(k, k - 3 - message.length, message))
      expect(result.valid).to.equal(1)
      expect(result.message.equals(message)).to.equal(true)
    })

    it('rejects 7 bytes of padding: valid 0 and the synthetic message', function () {
      expectRejected(encodedMessage(k, 7, Buffer.alloc(k - 10, 0x61)))
    })

    it('rejects a wrong first byte', function () {
      for (const first of [0x01, 0x02, 0x80, 0xff]) expectRejected(wellFormedBut(0, first), `first byte ${first}`)
    })

    it('rejects a wrong second byte (block types 0, 1, 3 and 0xff)', function () {
      for (const second of [0x00, 0x01, 0x03, 0xff]) expectRejected(wellFormedBut(1, second), `second byte ${second}`)
    })

    it('rejects a block with no zero separator', function () {
      const em = Buffer.alloc(k, 0x55)
      em[0] = 0
      em[1] = 2
      expectRejected(em)
    })

    it('rejects a zero in any of the first 8 padding bytes, and accepts it as the 9th', function () {
      for (let index = 2; index <= 10; index++) {
        const em = Buffer.alloc(k, 0x55)
        em[0] = 0
        em[1] = 2
        em[index] = 0
        const result = unpad(em)
        expect(result.valid, `zero at index ${index}`).to.equal(index === 10 ? 1 : 0)
        if (index === 10) expect(result.message.equals(Buffer.alloc(k - 11, 0x55))).to.equal(true)
        else expect(result.message.equals(synthetic)).to.equal(true)
      }
    })

    it('rejects an all-zero block and accepts 00 02 and 8 bytes of padding ending the block with 00 (empty message)', function () {
      expect(unpad(Buffer.alloc(k)).valid).to.equal(0)
      const em = Buffer.alloc(k, 0x01)
      em[0] = 0
      em[1] = 2
      em[k - 1] = 0
      const result = unpad(em)
      expect(result.valid).to.equal(1)
      expect(result.message.length).to.equal(0)
    })

    it('gives every bad block of one ciphertext and key the same synthetic message, whatever the block holds', function () {
      const bad = [Buffer.alloc(k), Buffer.alloc(k, 0xff), encodedMessage(k, 7, Buffer.alloc(k - 10)), crypto.randomBytes(k)]
      bad[3]![0] = 1
      for (const em of bad) expect(unpadImplicit(Buffer.from(em), ciphertext, rejectionKey).message.equals(synthetic)).to.equal(true)
    })

    it('gives another synthetic message for another ciphertext or another key', function () {
      const em = Buffer.alloc(k)
      const otherCiphertext = Buffer.from(ciphertext)
      otherCiphertext[k - 1]! ^= 1
      const otherKey = Buffer.from(rejectionKey)
      otherKey[0]! ^= 1
      const a = unpadImplicit(Buffer.from(em), ciphertext, rejectionKey).message
      const b = unpadImplicit(Buffer.from(em), otherCiphertext, rejectionKey).message
      const c = unpadImplicit(Buffer.from(em), ciphertext, otherKey).message
      expect(a.equals(b)).to.equal(false)
      expect(a.equals(c)).to.equal(false)
    })

    it('agrees with the plain reference for random blocks, block sizes and keys (property)', function () {
      const block = fc.integer({ min: 64, max: 520 }).chain((size) => fc.record({
        ciphertext: fc.uint8Array({ minLength: size, maxLength: size }),
        rejectionKey: fc.uint8Array({ minLength: 32, maxLength: 32 }),
        // A random block, or one shaped like 00 02 PS 00 M with a random PS (possibly holding zeros).
        em: fc.oneof(
          fc.uint8Array({ minLength: size, maxLength: size }),
          fc.tuple(fc.uint8Array({ minLength: size - 2, maxLength: size - 2 }), fc.integer({ min: 2, max: size - 1 }), fc.integer({ min: 0, max: 3 }))
            .map(([rest, separator, head]) => {
              const em = Buffer.concat([Buffer.from([head === 1 ? 1 : 0, head === 2 ? 3 : 2]), rest])
              for (let i = 2; i < separator; i++) if (em[i] === 0) em[i] = 1
              em[separator] = 0
              return new Uint8Array(em)
            })
        )
      }))
      fc.assert(fc.property(block, ({ ciphertext, rejectionKey, em }) => {
        const emBuffer = Buffer.from(em)
        const ct = Buffer.from(ciphertext)
        const key = Buffer.from(rejectionKey)
        const expected = referenceUnpad(emBuffer, ct, key)
        const result = unpadImplicit(Buffer.from(emBuffer), ct, key)
        expect(result.valid).to.equal(expected.valid)
        expect(result.message.toString('hex')).to.equal(expected.message.toString('hex'))
        expect(result.message.length).to.be.at.most(emBuffer.length - 11)
      }), { numRuns: 500 })
    })
  })

  describe('encodes (the key check: is this block exactly the encoding of one known message?)', function () {
    const k = 256
    const expected = Buffer.from('P2SN:KEYCHECK')

    it('is true for 00 02, eight or more nonzero bytes, 00 and the message', function () {
      expect(encodes(encodedMessage(k, k - 3 - expected.length, expected), expected)).to.equal(true)
      expect(encodes(encodedMessage(24, 8, expected), expected)).to.equal(true)
    })

    it('is false for each way of being something else', function () {
      const good = encodedMessage(k, k - 3 - expected.length, expected)
      const spoilt = (change: (em: Buffer) => void): Buffer => {
        const em = Buffer.from(good)
        change(em)
        return em
      }
      const separator = k - expected.length - 1
      const cases: Record<string, Buffer> = {
        'first byte': spoilt((em) => { em[0] = 1 }),
        'block type': spoilt((em) => { em[1] = 1 }),
        'a zero in the padding': spoilt((em) => { em[2 + 37] = 0 }),
        'a zero as the padding\'s last byte': spoilt((em) => { em[separator - 1] = 0 }),
        'no separator': spoilt((em) => { em[separator] = 7 }),
        'the message\'s first byte': spoilt((em) => { em[separator + 1]! ^= 0x20 }),
        'the message\'s last byte': spoilt((em) => { em[k - 1]! ^= 1 }),
        // A shorter message than expected, with its separator one byte later.
        'a shorter message': spoilt((em) => { em[separator] = 9; em[separator + 1] = 0 }),
        'all zeros': Buffer.alloc(k)
      }
      for (const [name, em] of Object.entries(cases)) expect(encodes(em, expected), name).to.equal(false)
      // Seven bytes of padding are too few, as for unpadImplicit.
      expect(encodes(encodedMessage(23, 7, expected), expected)).to.equal(false)
    })

    it('answers as unpadImplicit does, for random blocks and blocks shaped like an encoding (property)', function () {
      const block = fc.record({
        rest: fc.uint8Array({ minLength: 62, maxLength: 62 }),
        separator: fc.integer({ min: 2, max: 63 }),
        head: fc.integer({ min: 0, max: 3 }),
        plant: fc.boolean()
      }).map(({ rest, separator, head, plant }) => {
        const em = Buffer.concat([Buffer.from([head === 1 ? 1 : 0, head === 2 ? 3 : 2]), rest])
        for (let i = 2; i < separator; i++) if (em[i] === 0) em[i] = 1
        em[separator] = 0
        if (plant) expected.copy(em, 64 - expected.length)
        return em
      })
      const rejectionKey = crypto.randomBytes(32)
      fc.assert(fc.property(block, fc.uint8Array({ minLength: 64, maxLength: 64 }), (em, ciphertext) => {
        const { message, valid } = unpadImplicit(Buffer.from(em), Buffer.from(ciphertext), rejectionKey)
        expect(encodes(em, expected)).to.equal(valid === 1 && message.equals(expected))
      }), { numRuns: 2000 })
    })
  })

  describe('decryptMessage on hand-built blocks (raw RSA encryption of an encoded message)', function () {
    let pair: KeyPair

    before(async function () {
      pair = await generateKeyPair({ bits: 1024 })
    })

    for (const engine of ENGINES) {
      it(`accepts 8 bytes of padding and rejects 7 (engine ${engine})`, function () {
        const k = pair.privateKey.size
        const good = rawEncrypt(pair, encodedMessage(k, 8, Buffer.alloc(k - 11, 0x62)))
        expect(decryptMessage(pair, good, { engine, rejection: 'error' }).equals(Buffer.alloc(k - 11, 0x62))).to.equal(true)
        const bad = rawEncrypt(pair, encodedMessage(k, 7, Buffer.alloc(k - 10, 0x62)))
        const implicit = decryptMessage(pair, bad, { engine })
        expect(implicit.equals(Buffer.alloc(k - 10, 0x62))).to.equal(false)
        expect(implicit.length).to.be.at.most(k - 11)
        expect(decryptMessage(pair, bad, { engine }).equals(implicit), 'the same bytes again').to.equal(true)
        expectP2snErrorSync(() => decryptMessage(pair, bad, { engine, rejection: 'error' }), 'ERR_P2SN_DECRYPT')
      })
    }
  })

  describe('draft-irtf-cfrg-rsa-guidance Appendix B vectors (implicit-rejection/cases.json)', function () {
    const families = loadRejectionFamilies()
    const keys = new Map<string, PrivateKey>()
    function keyOf (id: string, pem: string): PrivateKey {
      let key = keys.get(id)
      if (key === undefined) {
        key = parsePrivateKey(pem).privateKey
        keys.set(id, key)
      }
      return key
    }

    it('has the four keys of the draft with 12 cases each, titled Valid… or Invalid…', function () {
      expect(families.map((f) => [f.id, f.modulusBits, f.cases.length])).to.deep.equal([
        ['k2048', 2048, 12], ['k2049', 2049, 12], ['k3072', 3072, 12], ['k4096', 4096, 12]
      ])
      for (const family of families) {
        for (const c of family.cases) expect(c.title).to.match(/^(Valid|Invalid)\b/)
      }
    })

    for (const family of families) {
      describe(`${family.section} (${family.id})`, function () {
        it(`reads the PKCS#8 key as a ${family.modulusBits}-bit key`, function () {
          const key = keyOf(family.id, family.privateKeyPem)
          expect(key.bits).to.equal(family.modulusBits)
          expect(key.size).to.equal(Math.ceil(family.modulusBits / 8))
        })

        for (const engine of ENGINES) {
          for (const c of family.cases) {
            it(`${c.title} → expected_hex (engine ${engine})`, function () {
              const key = keyOf(family.id, family.privateKeyPem)
              const ciphertext = Buffer.from(c.ciphertextHex, 'hex')
              expect(ciphertext.length).to.equal(key.size)
              expect(decryptMessage(key, ciphertext, { engine }).toString('hex')).to.equal(c.expectedHex)
            })
          }
        }

        it('with rejection: \'error\', the Valid cases decrypt and each Invalid case throws ERR_P2SN_DECRYPT (engine openssl)', function () {
          const key = keyOf(family.id, family.privateKeyPem)
          for (const c of family.cases) {
            const ciphertext = Buffer.from(c.ciphertextHex, 'hex')
            if (c.title.startsWith('Valid')) {
              expect(decryptMessage(key, ciphertext, { rejection: 'error' }).toString('hex'), c.title).to.equal(c.expectedHex)
            } else {
              expectP2snErrorSync(() => decryptMessage(key, ciphertext, { rejection: 'error' }), 'ERR_P2SN_DECRYPT')
            }
          }
        })
      })
    }
  })

  describe('Wycheproof RSAES-PKCS1-v1_5 vectors (wycheproof/rsa_pkcs1_*_test.json)', function () {
    const keys = new Map<WycheproofGroup, PrivateKey>()
    function keyOf (group: WycheproofGroup): PrivateKey {
      let key = keys.get(group)
      if (key === undefined) {
        key = parsePrivateKey(group.privateKeyPem).privateKey
        keys.set(group, key)
      }
      return key
    }

    const isValid = (t: WycheproofTest): boolean => t.result === 'valid' || t.result === 'acceptable'
    const isBadPadding = (t: WycheproofTest): boolean => t.result === 'invalid' && t.flags.includes('InvalidPkcs1Padding')
    const isBadFormat = (t: WycheproofTest): boolean => t.result === 'invalid' && t.flags.includes('InvalidCiphertextFormat')

    /** The error `rejection: 'error'` gives for a bad padding, as class, code and message. */
    function errorSignature (key: PrivateKey, t: WycheproofTest, engine: Engine): string {
      const err = expectP2snErrorSync(() => decryptMessage(key, Buffer.from(t.ct, 'hex'), { engine, rejection: 'error' }), 'ERR_P2SN_DECRYPT')
      return JSON.stringify([err.constructor.name, err.name, err.code, err.message])
    }

    const sizes = [2048, 3072, 4096]
    const files = sizes.map((bits) => loadWycheproof(bits))

    for (const [index, file] of files.entries()) {
      const bits = sizes[index]!
      const tests = file.groups.flatMap((group) => group.tests.map((test) => ({ group, test })))

      describe(file.file, function () {
        it(`holds ${file.numberOfTests} tests, each valid, a bad padding or a bad ciphertext format, all for ${bits}-bit keys`, function () {
          expect(tests.length).to.equal(file.numberOfTests)
          for (const { group, test } of tests) {
            expect(group.keySize).to.equal(bits)
            const kinds = [isValid(test), isBadPadding(test), isBadFormat(test)].filter(Boolean).length
            expect(kinds, `tcId ${test.tcId} (${test.result}, ${test.flags.join(', ')}) falls in exactly one kind`).to.equal(1)
          }
          expect(tests.filter(({ test }) => isBadPadding(test)).length).to.be.greaterThan(0)
        })

        it(`reads every group's key as a ${bits}-bit key`, function () {
          for (const group of file.groups) expect(keyOf(group).bits).to.equal(bits)
        })

        for (const engine of ENGINES) {
          describe(`engine ${engine}`, function () {
            for (const { group, test } of tests) {
              const title = `tcId ${test.tcId} ${test.result} [${test.flags.join(', ')}]: ${test.comment}`
              it(title, function () {
                const key = keyOf(group)
                const ciphertext = Buffer.from(test.ct, 'hex')
                if (isValid(test)) {
                  expect(decryptMessage(key, ciphertext, { engine }).toString('hex')).to.equal(test.msg)
                } else if (isBadPadding(test)) {
                  const out = decryptMessage(key, ciphertext, { engine })
                  expect(out.toString('hex'), 'decrypts to something other than msg').not.to.equal(test.msg)
                  expect(out.length).to.be.at.most(key.size - 11)
                  // The same bytes again, and the same bytes from OpenSSL (cheap); a second forge run only at 2048 bits.
                  if (engine === 'openssl' || bits === 2048) {
                    expect(decryptMessage(key, ciphertext, { engine }).toString('hex'), 'a second run').to.equal(out.toString('hex'))
                  }
                  if (engine !== 'openssl') {
                    expect(decryptMessage(key, ciphertext, { engine: 'openssl' }).toString('hex'), 'the other engine').to.equal(out.toString('hex'))
                  }
                } else {
                  // Wrong length, empty, or c = n: all public facts, refused before any private operation.
                  expect(ciphertext.length !== key.size || Buffer.compare(ciphertext, key.publicKey.numbers.n) >= 0, 'test setup: a public format fault').to.equal(true)
                  expectP2snErrorSync(() => decryptMessage(key, ciphertext, { engine }), 'ERR_P2SN_BAD_CIPHERTEXT')
                  expectP2snErrorSync(() => decryptMessage(key, ciphertext, { engine, rejection: 'error' }), 'ERR_P2SN_BAD_CIPHERTEXT')
                }
              })
            }
          })
        }

        it('with rejection: \'error\', valid tests decrypt and every bad padding throws the identical error (engine openssl)', function () {
          const signatures = new Set<string>()
          for (const { group, test } of tests) {
            const key = keyOf(group)
            if (isValid(test)) {
              expect(decryptMessage(key, Buffer.from(test.ct, 'hex'), { rejection: 'error' }).toString('hex'), `tcId ${test.tcId}`).to.equal(test.msg)
            } else if (isBadPadding(test)) {
              signatures.add(errorSignature(key, test, 'openssl'))
            }
          }
          expect([...signatures]).to.have.length(1)
        })
      })
    }

    it('with rejection: \'error\', every bad padding of every key size, on either engine, throws the identical error', function () {
      const signatures = new Set<string>()
      for (const [index, file] of files.entries()) {
        for (const group of file.groups) {
          for (const test of group.tests) {
            if (!isBadPadding(test)) continue
            signatures.add(errorSignature(keyOf(group), test, 'openssl'))
            // forge at 2048 bits only: about 20 private operations instead of 60, most of them at 4096 bits.
            if (sizes[index] === 2048) signatures.add(errorSignature(keyOf(group), test, 'forge'))
          }
        }
      }
      expect([...signatures]).to.have.length(1)
      const [only] = [...signatures] as [string]
      expect((JSON.parse(only) as string[]).slice(0, 3)).to.deep.equal(['P2snError', 'P2snError', 'ERR_P2SN_DECRYPT'])
    })
  })
})
