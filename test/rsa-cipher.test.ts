import crypto from 'node:crypto'
import { expect } from 'chai'
import {
  DEFAULT_MAX_MESSAGE_BLOCKS, decryptMessage, encryptMessage, forgeEngine, generateKeyPair, opensslEngine, P2snError,
  parsePrivateKey, RsaCipher, type KeyPair, type RsaEngine
} from '../lib/index.js'
import { blocks, encodedMessage, rawEncrypt } from './helpers/ciphertext-classes.js'
import { collect } from './helpers/chunking.js'
// Every counting engine here counts turns too, read or not: so every decryptor runs beside the
// same rounds of setImmediate as the one whose turns are counted.
import { countingEngine } from './helpers/counting-engine.js'
import { expectP2snErrorSync, thrown } from './helpers/errors.js'
import { fixtureText } from './helpers/fixtures.js'
import { settle, within } from './helpers/timing.js'

const ENGINES = ['openssl', 'forge'] as const
/** Modulus length in bytes of the 1024-bit test keys, and the plaintext one block holds. */
const K = 128
const ROOM = K - 11
/** The message lengths around the block size, by name. */
const LENGTHS: ReadonlyArray<[string, number]> = [['0', 0], ['1', 1], ['k − 11', ROOM], ['k − 10', ROOM + 1], ['3·(k − 11) + 5', 3 * ROOM + 5]]

/** Writes the inputs and resolves with the first error the stream emits; rejects when it ends without one. */
async function streamError (stream: RsaCipher, inputs: readonly unknown[]): Promise<unknown> {
  return await new Promise((resolve, reject) => {
    stream.on('error', resolve)
    stream.on('end', () => reject(new Error('the stream ended without an error')))
    stream.resume()
    for (const input of inputs) stream.write(input)
    stream.end()
  })
}

/** Raw RSA with the private key: shows the padding of a block. */
function rawDecrypt (pair: KeyPair, block: Buffer): Buffer {
  return crypto.privateDecrypt({ key: pair.privateKey.keyObject, padding: crypto.constants.RSA_NO_PADDING }, block)
}

/** A message of `length` bytes that is not all one byte, so misplaced pieces show. */
function message (length: number): Buffer {
  const out = Buffer.alloc(length)
  for (let i = 0; i < length; i++) out[i] = (i * 7 + 3) & 0xff
  return out
}

/** Checks that `block` is a well-formed RSAES-PKCS1-v1_5 block holding `plaintext`. */
function expectPkcs1Block (pair: KeyPair, block: Buffer, plaintext: Buffer): void {
  const k = pair.privateKey.size
  expect(block.length).to.equal(k)
  const em = rawDecrypt(pair, block)
  expect(em[0], 'EM[0]').to.equal(0)
  expect(em[1], 'EM[1]').to.equal(2)
  const separator = em.indexOf(0, 2)
  expect(separator, 'at least 8 nonzero padding bytes').to.be.at.least(10)
  expect(em.subarray(separator + 1).equals(plaintext), 'the message after the separator').to.equal(true)
}

describe('RSA cipher (rsa-cipher.ts)', function () {
  let pair: KeyPair
  let other: KeyPair
  const k = K
  const room = ROOM

  before(async function () {
    [pair, other] = await Promise.all([generateKeyPair({ bits: 1024 }), generateKeyPair({ bits: 1024 })])
  })

  it('uses a 1024-bit test key: k = 128, one block holds 117 bytes', function () {
    expect(pair.privateKey.size).to.equal(K)
    expect(pair.publicKey.maxBlockPlaintext).to.equal(ROOM)
  })

  describe('encryptMessage / decryptMessage round trips', function () {
    for (const engine of ENGINES) {
      for (const [name, length] of LENGTHS) {
        it(`a message of ${name} bytes on engine ${engine}: ceil(n / (k − 11)) blocks of k bytes (at least one)`, function () {
          const plaintext = message(length)
          const ciphertext = encryptMessage(pair.publicKey, plaintext, { engine })
          expect(ciphertext.length).to.equal(Math.max(1, Math.ceil(length / room)) * k)
          expect(decryptMessage(pair.privateKey, ciphertext, { engine }).equals(plaintext)).to.equal(true)
          expect(decryptMessage(pair.privateKey, ciphertext, { engine, rejection: 'error' }).equals(plaintext)).to.equal(true)
        })
      }
    }

    it('gives 1, 1, 1, 2 and 4 blocks for those lengths', function () {
      expect(LENGTHS.map(([, n]) => encryptMessage(pair, message(n)).length / k)).to.deep.equal([1, 1, 1, 2, 4])
    })

    for (const engine of ENGINES) {
      it(`each block is standard RSAES-PKCS1-v1_5 (00 02, 8+ nonzero bytes, 00, piece) on engine ${engine}`, function () {
        const plaintext = message(3 * room + 5)
        const ciphertext = encryptMessage(pair, plaintext, { engine })
        for (let i = 0; i < 4; i++) {
          expectPkcs1Block(pair, ciphertext.subarray(i * k, (i + 1) * k), plaintext.subarray(i * room, (i + 1) * room))
        }
        expectPkcs1Block(pair, encryptMessage(pair, Buffer.alloc(0), { engine }), Buffer.alloc(0))
        expectPkcs1Block(pair, encryptMessage(pair, message(room), { engine }), message(room))
      })

      it(`is randomized: the same message twice gives two ciphertexts (engine ${engine})`, function () {
        const a = encryptMessage(pair, 'same', { engine })
        const b = encryptMessage(pair, 'same', { engine })
        expect(a.equals(b)).to.equal(false)
      })
    }

    for (const [from, to] of [['forge', 'openssl'], ['openssl', 'forge']] as const) {
      it(`crosses engines: encrypted with ${from}, decrypted with ${to}`, function () {
        for (const [name, length] of LENGTHS) {
          const plaintext = message(length)
          const ciphertext = encryptMessage(pair, plaintext, { engine: from })
          expect(decryptMessage(pair, ciphertext, { engine: to }).equals(plaintext), name).to.equal(true)
        }
      })
    }

    it('encrypts a string as its UTF-8 bytes and accepts a Uint8Array view at an offset', function () {
      const text = 'héllo wörld 🌍'
      expect(decryptMessage(pair, encryptMessage(pair, text)).toString('utf8')).to.equal(text)
      const backing = new Uint8Array(300).map((_, i) => i & 0xff)
      const view = backing.subarray(17, 17 + 200)
      const ciphertext = encryptMessage(pair, view)
      expect(ciphertext.length).to.equal(2 * k)
      expect(decryptMessage(pair, new Uint8Array(ciphertext)).equals(Buffer.from(view))).to.equal(true)
    })

    it('accepts a ciphertext given as a Uint8Array view at an offset', function () {
      const ciphertext = encryptMessage(pair, 'view')
      const backing = new Uint8Array(k + 10)
      backing.set(ciphertext, 5)
      expect(decryptMessage(pair, backing.subarray(5, 5 + k)).toString()).to.equal('view')
    })

    for (const engine of ENGINES) {
      it(`works with a 1023-bit modulus (k = 128), as the Python reference often makes (engine ${engine})`, function () {
        const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 1023 })
        const key = parsePrivateKey(privateKey.export({ type: 'pkcs1', format: 'pem' }))
        expect(key.privateKey.bits).to.equal(1023)
        expect(key.privateKey.size).to.equal(128)
        for (const length of [0, 117, 118, 356]) {
          const plaintext = message(length)
          const ciphertext = encryptMessage(key, plaintext, { engine })
          expect(ciphertext.length).to.equal(Math.max(1, Math.ceil(length / 117)) * 128)
          expect(decryptMessage(key, ciphertext, { engine }).equals(plaintext), `${length} bytes`).to.equal(true)
        }
      })
    }
  })

  describe('strict', function () {
    for (const engine of ENGINES) {
      it(`encrypts k − 11 bytes and refuses k − 10 with ERR_P2SN_MESSAGE_TOO_LONG (engine ${engine})`, function () {
        const ciphertext = encryptMessage(pair, message(room), { engine, strict: true })
        expect(ciphertext.length).to.equal(k)
        expectP2snErrorSync(() => encryptMessage(pair, message(room + 1), { engine, strict: true }), 'ERR_P2SN_MESSAGE_TOO_LONG')
        expectP2snErrorSync(() => encryptMessage(pair, message(3 * room + 5), { engine, strict: true }), 'ERR_P2SN_MESSAGE_TOO_LONG')
      })

      it(`decrypts k bytes and refuses a multi-block ciphertext with ERR_P2SN_MESSAGE_TOO_LONG (engine ${engine})`, function () {
        expect(decryptMessage(pair, encryptMessage(pair, message(room)), { engine, strict: true }).equals(message(room))).to.equal(true)
        const twoBlocks = encryptMessage(pair, message(room + 1))
        expect(twoBlocks.length).to.equal(2 * k)
        expectP2snErrorSync(() => decryptMessage(pair, twoBlocks, { engine, strict: true }), 'ERR_P2SN_MESSAGE_TOO_LONG')
        expectP2snErrorSync(() => decryptMessage(pair, twoBlocks, { engine, strict: true, rejection: 'error' }), 'ERR_P2SN_MESSAGE_TOO_LONG')
      })
    }

    it('still refuses a ciphertext of the wrong length with ERR_P2SN_BAD_CIPHERTEXT', function () {
      expectP2snErrorSync(() => decryptMessage(pair, Buffer.alloc(k + 1, 1), { strict: true }), 'ERR_P2SN_BAD_CIPHERTEXT')
    })
  })

  describe('ciphertexts that are not made of blocks below the modulus', function () {
    for (const engine of ENGINES) {
      it(`refuses an empty ciphertext and lengths that are not a multiple of k with ERR_P2SN_BAD_CIPHERTEXT (engine ${engine})`, function () {
        const good = encryptMessage(pair, message(room + 1)) // two blocks: 2k bytes to cut from
        expect(good.length).to.equal(2 * k)
        for (const length of [0, 1, k - 1, k + 1, 2 * k - 1]) {
          for (const rejection of ['implicit', 'error'] as const) {
            expectP2snErrorSync(() => decryptMessage(pair, good.subarray(0, length), { engine, rejection }), 'ERR_P2SN_BAD_CIPHERTEXT')
          }
        }
        expectP2snErrorSync(() => decryptMessage(pair, Buffer.concat([good, Buffer.alloc(1)]), { engine }), 'ERR_P2SN_BAD_CIPHERTEXT')
      })

      it(`refuses a block equal to the modulus, above it, or all 0xff with ERR_P2SN_BAD_CIPHERTEXT (engine ${engine})`, function () {
        const n = pair.publicKey.numbers.n
        expect(n.length).to.equal(k)
        // n + 1, carried: n's last byte may be 0xff (one key in 128), and n < 256^k leaves room.
        const above = Buffer.from(n)
        for (let i = k - 1; i >= 0; i--) {
          above[i] = (above[i]! + 1) & 0xff
          if (above[i] !== 0) break
        }
        expect(Buffer.compare(above, n), 'n + 1 is above n').to.equal(1)
        for (const block of [Buffer.from(n), above, Buffer.alloc(k, 0xff)]) {
          expectP2snErrorSync(() => decryptMessage(pair, block, { engine }), 'ERR_P2SN_BAD_CIPHERTEXT')
          expectP2snErrorSync(() => decryptMessage(pair, block, { engine, rejection: 'error' }), 'ERR_P2SN_BAD_CIPHERTEXT')
        }
        const nMinusOne = Buffer.from(n)
        nMinusOne[k - 1]! -= 1
        expect(decryptMessage(pair, nMinusOne, { engine }).length, 'n − 1 is a block (bad padding: a synthetic message)').to.be.at.most(room)
      })

      it(`refuses a multi-block ciphertext whose second block is not below the modulus (engine ${engine})`, function () {
        const good = encryptMessage(pair, message(room))
        expectP2snErrorSync(() => decryptMessage(pair, Buffer.concat([good, pair.publicKey.numbers.n]), { engine }), 'ERR_P2SN_BAD_CIPHERTEXT')
      })
    }
  })

  describe('maxMessageBlocks', function () {
    let block: Buffer
    before(function () { block = encryptMessage(pair, message(room)) })

    it(`is DEFAULT_MAX_MESSAGE_BLOCKS (32) by default: 32 blocks decrypt, 33 are ERR_P2SN_MESSAGE_TOO_LONG before any block is`, async function () {
      expect(DEFAULT_MAX_MESSAGE_BLOCKS).to.equal(32)
      const counting = countingEngine({ turns: true })
      try {
        const longest = blocks(block, 32)
        expect(decryptMessage(pair, longest, { engine: counting.engine }).equals(blocks(message(room), 32))).to.equal(true)
        expect(counting.decrypted()).to.equal(32)
        const err = expectP2snErrorSync(() => decryptMessage(pair, blocks(block, 33), { engine: counting.engine }), 'ERR_P2SN_MESSAGE_TOO_LONG')
        expect(err.message).to.match(/^the ciphertext holds 33 rsa blocks, more than maxMessageBlocks \(32\) allows; raise maxMessageBlocks on the receiver, or send shorter messages$/)
        const streamed = await streamError(RsaCipher.decryptor(pair, { engine: counting.engine }), [blocks(block, 33)])
        expect(streamed).to.be.instanceOf(P2snError).with.property('code', 'ERR_P2SN_MESSAGE_TOO_LONG')
        expect(counting.decrypted(), 'no block of a 33-block message').to.equal(32)
      } finally {
        counting.stop()
      }
    })

    it('takes a limit of one\'s own, Infinity included, in decryptMessage and decryptors alike', async function () {
      expect(decryptMessage(pair, blocks(block, 3), { maxMessageBlocks: 3 }).length).to.equal(3 * room)
      expectP2snErrorSync(() => decryptMessage(pair, blocks(block, 4), { maxMessageBlocks: 3 }), 'ERR_P2SN_MESSAGE_TOO_LONG')
      expect(decryptMessage(pair, blocks(block, 40), { maxMessageBlocks: Infinity }).length).to.equal(40 * room)
      expect(decryptMessage(pair, block, { maxMessageBlocks: 1 }).length).to.equal(room)
      const out = await collect(RsaCipher.decryptor(pair, { maxMessageBlocks: 40 }), [blocks(block, 40)])
      expect(out.map((m) => m.length)).to.deep.equal([40 * room])
      const err = await streamError(RsaCipher.decryptor(pair, { maxMessageBlocks: 2 }), [blocks(block, 3)])
      expect(err).to.be.instanceOf(P2snError).with.property('code', 'ERR_P2SN_MESSAGE_TOO_LONG')
    })

    it('strict still allows one block, whatever maxMessageBlocks says', function () {
      const err = expectP2snErrorSync(() => decryptMessage(pair, blocks(block, 2), { strict: true, maxMessageBlocks: 10 }), 'ERR_P2SN_MESSAGE_TOO_LONG')
      expect(err.message).to.include('strict allows one')
      expect(decryptMessage(pair, block, { strict: true, maxMessageBlocks: 10 }).length).to.equal(room)
    })

    it('must be a whole number of at least 1, or Infinity: ERR_P2SN_INVALID_ARGUMENT, a decryptor\'s when it is made', function () {
      for (const maxMessageBlocks of [0, -1, 1.5, Number.NaN, '3' as unknown as number]) {
        expectP2snErrorSync(() => decryptMessage(pair, block, { maxMessageBlocks }), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => RsaCipher.decryptor(pair, { maxMessageBlocks }), 'ERR_P2SN_INVALID_ARGUMENT')
      }
    })

    it('every public fact is checked before any block is decrypted: a last block not below the modulus is refused first', async function () {
      const counting = countingEngine({ turns: true })
      try {
        const lastBad = Buffer.concat([blocks(block, 5), pair.publicKey.numbers.n])
        expectP2snErrorSync(() => decryptMessage(pair, lastBad, { engine: counting.engine }), 'ERR_P2SN_BAD_CIPHERTEXT')
        const streamed = await streamError(RsaCipher.decryptor(pair, { engine: counting.engine }), [lastBad])
        expect(streamed).to.be.instanceOf(P2snError).with.property('code', 'ERR_P2SN_BAD_CIPHERTEXT')
        // The length first: not whole blocks is BAD_CIPHERTEXT however many blocks it would be.
        expectP2snErrorSync(() => decryptMessage(pair, blocks(block, 40).subarray(1), { engine: counting.engine }), 'ERR_P2SN_BAD_CIPHERTEXT')
        expect(counting.decrypted()).to.equal(0)
      } finally {
        counting.stop()
      }
    })
  })

  describe('decryptors and multi-block messages', function () {
    it('decrypt a single block within write(), and a multi-block message a block per turn of the event loop', async function () {
      const counting = countingEngine({ turns: true })
      try {
        const decryptor = RsaCipher.decryptor(pair, { engine: counting.engine })
        const out: Buffer[] = []
        decryptor.on('data', (chunk: Buffer) => out.push(chunk))
        decryptor.write(encryptMessage(pair, 'one'))
        expect(counting.decrypted(), 'a single block, decrypted before write() returned').to.equal(1)
        decryptor.write(encryptMessage(pair, message(8 * room)))
        expect(counting.decrypted(), 'only the first of 8 blocks so far').to.equal(2)
        decryptor.write(encryptMessage(pair, 'two'))
        decryptor.end()
        await within(5000, new Promise((resolve) => decryptor.once('end', resolve)), 'the end')
        expect(out.map((m) => m.toString('hex'))).to.deep.equal([Buffer.from('one'), message(8 * room), Buffer.from('two')].map((m) => m.toString('hex')))
        const turns = counting.turnsOfBlocks.slice(1, 9)
        expect(new Set(turns).size, `the turns of the 8 blocks: ${turns.join(', ')}`).to.equal(8)
      } finally {
        counting.stop()
      }
    })

    for (const engine of ENGINES) {
      it(`give byte for byte what decryptMessage gives, bad paddings (implicit rejection) included, in order (engine ${engine})`, async function () {
        const bad = rawEncrypt(pair, encodedMessage(k, 7, Buffer.alloc(k - 10, 0x41)))
        const good = encryptMessage(pair, message(room))
        const ciphertexts = [
          encryptMessage(pair, message(5 * room + 3)), Buffer.concat([good, bad, good]), bad, encryptMessage(pair, 'short'),
          Buffer.concat([bad, bad]), encryptMessage(pair, message(2 * room))
        ]
        const out = await collect(RsaCipher.decryptor(pair, { engine }), ciphertexts)
        expect(out.map((m) => m.toString('hex'))).to.deep.equal(ciphertexts.map((c) => decryptMessage(pair, c, { engine }).toString('hex')))
      })
    }

    it('with rejection: \'error\', fail with one ERR_P2SN_DECRYPT for a bad block anywhere, once every block is decrypted', async function () {
      const bad = rawEncrypt(pair, encodedMessage(k, 7, Buffer.alloc(k - 10, 0x41)))
      const good = encryptMessage(pair, message(room))
      const expected = thrown(() => decryptMessage(pair, Buffer.concat([good, bad]), { rejection: 'error' })) as P2snError
      for (const ciphertext of [Buffer.concat([bad, good, good]), Buffer.concat([good, bad, good]), Buffer.concat([good, good, bad])]) {
        const counting = countingEngine({ turns: true })
        try {
          const decryptor = RsaCipher.decryptor(pair, { rejection: 'error', engine: counting.engine })
          const out: string[] = []
          decryptor.on('data', (chunk: Buffer) => out.push(chunk.toString()))
          const err = await streamError(decryptor, [encryptMessage(pair, 'before'), ciphertext, encryptMessage(pair, 'after')])
          expect(err).to.be.instanceOf(P2snError)
          expect((err as P2snError).code).to.equal('ERR_P2SN_DECRYPT')
          expect((err as P2snError).message).to.equal(expected.message)
          expect(out).to.deep.equal(['before'])
          expect(counting.decrypted(), 'the message before and all three blocks').to.equal(4)
        } finally {
          counting.stop()
        }
      }
    })

    it('stop decrypting a message when destroyed in the middle of it, quietly', async function () {
      const counting = countingEngine({ turns: true })
      try {
        const decryptor = RsaCipher.decryptor(pair, { engine: counting.engine, maxMessageBlocks: 30 })
        const events: unknown[] = []
        decryptor.on('data', (chunk) => events.push(chunk))
        decryptor.on('error', (err) => events.push(err))
        decryptor.write(blocks(encryptMessage(pair, 'x'), 30))
        await settle(3)
        decryptor.destroy()
        await settle(40)
        expect(counting.decrypted()).to.be.within(1, 5)
        expect(events).to.deep.equal([])
      } finally {
        counting.stop()
      }
    })

    it('hand a message of too many blocks to onInvalid, and go on with the next', async function () {
      const invalid: string[] = []
      const decryptor = RsaCipher.decryptor(pair, { maxMessageBlocks: 2, onInvalid: (err) => { invalid.push(err.code) } })
      const out = await within(5000, collect(decryptor, [encryptMessage(pair, message(3 * room)), encryptMessage(pair, message(2 * room))]), 'the messages')
      expect(invalid).to.deep.equal(['ERR_P2SN_MESSAGE_TOO_LONG'])
      expect(out.map((m) => m.toString('hex'))).to.deep.equal([message(2 * room).toString('hex')])
    })
  })

  describe('bad padding', function () {
    for (const engine of ENGINES) {
      it(`with rejection: 'error' throws ERR_P2SN_DECRYPT; by default gives the same synthetic message every time (engine ${engine})`, function () {
        const plaintext = Buffer.from('P2SN:KEYCHECK')
        const bad = [
          encodedMessage(k, 7, Buffer.alloc(k - 10, 0x41)), // padding one byte short
          (() => { const em = encodedMessage(k, k - 3 - plaintext.length, plaintext); em[1] = 1; return em })(), // signature padding
          (() => { const em = encodedMessage(k, k - 3 - plaintext.length, plaintext); em[0] = 1; return em })(), // first byte not 0
          (() => { const em = Buffer.alloc(k, 0x4d); em[1] = 2; return em })() // no separator
        ].map((em) => rawEncrypt(pair, em))
        const messages = new Set<string>()
        for (const ciphertext of bad) {
          const err = expectP2snErrorSync(() => decryptMessage(pair, ciphertext, { engine, rejection: 'error' }), 'ERR_P2SN_DECRYPT')
          messages.add(err.message)
          const out = decryptMessage(pair, ciphertext, { engine })
          expect(out.equals(plaintext)).to.equal(false)
          expect(decryptMessage(pair, ciphertext, { engine }).equals(out)).to.equal(true)
          expect(decryptMessage(pair, ciphertext, { engine: engine === 'forge' ? 'openssl' : 'forge' }).equals(out), 'the other engine').to.equal(true)
        }
        expect(messages.size, 'one error message for every kind of bad padding').to.equal(1)
      })

      it(`in any block of a multi-block message, with rejection: 'error', throws ERR_P2SN_DECRYPT (engine ${engine})`, function () {
        const good = encryptMessage(pair, message(room))
        const bad = rawEncrypt(pair, encodedMessage(k, 7, Buffer.alloc(k - 10, 0x41)))
        for (const ciphertext of [Buffer.concat([good, bad]), Buffer.concat([bad, good]), Buffer.concat([good, bad, good])]) {
          expectP2snErrorSync(() => decryptMessage(pair, ciphertext, { engine, rejection: 'error' }), 'ERR_P2SN_DECRYPT')
        }
        const implicit = decryptMessage(pair, Buffer.concat([good, bad]), { engine })
        expect(implicit.subarray(0, room).equals(message(room)), 'the good block still decrypts').to.equal(true)
      })
    }

    it('accepts a block of exactly 8 padding bytes (the smallest valid padding) with rejection: \'error\'', function () {
      const block = rawEncrypt(pair, encodedMessage(k, 8, message(room)))
      for (const engine of ENGINES) expect(decryptMessage(pair, block, { engine, rejection: 'error' }).equals(message(room))).to.equal(true)
    })
  })

  describe('keys given as PEM, key objects and key pairs', function () {
    it('encrypts to PKCS#1 and SPKI public PEM, a private PEM, a key pair, a KeyObject and PEM bytes', function () {
      const publicInputs = [
        pair.publicKey.toPem(),
        pair.publicKey.keyObject.export({ type: 'spki', format: 'pem' }) as string,
        pair.privateKey.toPem(),
        Buffer.from(pair.publicKey.toPem()),
        new Uint8Array(Buffer.from(pair.publicKey.toPem())),
        pair,
        pair.privateKey,
        pair.publicKey.keyObject,
        pair.privateKey.keyObject
      ]
      for (const [i, input] of publicInputs.entries()) {
        const ciphertext = encryptMessage(input, `to input ${i}`)
        expect(decryptMessage(pair, ciphertext).toString(), `input ${i}`).to.equal(`to input ${i}`)
      }
    })

    it('decrypts with PKCS#1 and PKCS#8 private PEM, PEM bytes, a key pair and a KeyObject', function () {
      const ciphertext = encryptMessage(pair, message(3 * room + 5))
      const privateInputs = [
        pair.privateKey.toPem(),
        pair.privateKey.keyObject.export({ type: 'pkcs8', format: 'pem' }) as string,
        Buffer.from(pair.privateKey.toPem()),
        pair,
        pair.privateKey,
        pair.privateKey.keyObject
      ]
      for (const [i, input] of privateInputs.entries()) {
        for (const engine of ENGINES) {
          expect(decryptMessage(input, ciphertext, { engine }).equals(message(3 * room + 5)), `input ${i}, engine ${engine}`).to.equal(true)
        }
      }
    })

    it('takes PEM text in the stream factories', async function () {
      const encryptor = RsaCipher.encryptor(pair.publicKey.toPem())
      const decryptor = RsaCipher.decryptor(pair.privateKey.toPem())
      const ciphertexts = await collect(encryptor, ['pem'])
      expect((await collect(decryptor, ciphertexts)).map((b) => b.toString())).to.deep.equal(['pem'])
    })

    it('decrypts nothing meant for another key with rejection: \'error\' (or refuses it as a bad block)', function () {
      const ciphertext = encryptMessage(other, 'not for pair')
      const err = thrown(() => decryptMessage(pair, ciphertext, { rejection: 'error' }))
      expect(err).to.be.instanceOf(P2snError)
      // A block of the other key is at or above this modulus about half the time: public, so refused outright.
      expect(['ERR_P2SN_DECRYPT', 'ERR_P2SN_BAD_CIPHERTEXT']).to.include((err as P2snError).code)
    })
  })

  describe('engines', function () {
    it('refuses an unknown engine with ERR_P2SN_INVALID_ARGUMENT everywhere an engine is taken', function () {
      const ciphertext = encryptMessage(pair, 'x')
      for (const engine of ['bogus', 'OpenSSL', '', {}, { encryptBlock: () => Buffer.alloc(0) }, null, 42]) {
        const options = { engine: engine as never }
        expectP2snErrorSync(() => encryptMessage(pair, 'x', options), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => decryptMessage(pair, ciphertext, options), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => RsaCipher.encryptor(pair, options), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => RsaCipher.decryptor(pair, options), 'ERR_P2SN_INVALID_ARGUMENT')
      }
    })

    it('names the two engines', function () {
      expect(opensslEngine.name).to.equal('openssl')
      expect(forgeEngine.name).to.equal('forge')
    })

    it('uses an engine object of your own: one encryptBlock and one decryptRaw per block', function () {
      const calls = { encryptBlock: 0, decryptRaw: 0 }
      const counting: RsaEngine = {
        name: 'openssl',
        encryptBlock (key, plaintext) {
          calls.encryptBlock++
          expect(plaintext.length).to.be.at.most(room)
          return opensslEngine.encryptBlock(key, plaintext)
        },
        decryptRaw (key, ciphertext) {
          calls.decryptRaw++
          expect(ciphertext.length).to.equal(k)
          return opensslEngine.decryptRaw(key, ciphertext)
        }
      }
      const plaintext = message(3 * room + 5)
      const ciphertext = encryptMessage(pair, plaintext, { engine: counting })
      expect(decryptMessage(pair, ciphertext, { engine: counting }).equals(plaintext)).to.equal(true)
      expect(calls).to.deep.equal({ encryptBlock: 4, decryptRaw: 4 })
    })

    describe('a private key of three primes (OpenSSL makes them; generateKeyPair does not)', function () {
      let threePrimes: KeyPair
      // Two blocks of the 2048-bit key.
      const plaintext = message(300)

      before(function () {
        threePrimes = parsePrivateKey(fixtureText('multi-prime/three-primes-2048.pem'))
      })

      it('the openssl engine decrypts with it, and either engine encrypts to it (n and e are all encryption takes)', function () {
        for (const engine of ENGINES) {
          const ciphertext = encryptMessage(threePrimes, plaintext, { engine })
          expect(decryptMessage(threePrimes, ciphertext).equals(plaintext), `encrypted by ${engine}`).to.equal(true)
          expect(decryptMessage(threePrimes, ciphertext, { rejection: 'error' }).equals(plaintext), `encrypted by ${engine}, rejection: 'error'`).to.equal(true)
        }
      })

      it('the forge engine refuses it with ERR_P2SN_INVALID_ARGUMENT, rather than decrypting it to garbage', async function () {
        const ciphertext = encryptMessage(threePrimes, plaintext)
        for (const rejection of ['implicit', 'error'] as const) {
          const err = expectP2snErrorSync(() => decryptMessage(threePrimes, ciphertext, { engine: 'forge', rejection }), 'ERR_P2SN_INVALID_ARGUMENT')
          expect(err.message).to.include('use engine: \'openssl\', or a two-prime key')
          // Refused again: nothing half-made was cached for the key.
          expectP2snErrorSync(() => decryptMessage(threePrimes, ciphertext, { engine: forgeEngine, rejection }), 'ERR_P2SN_INVALID_ARGUMENT')
        }
        const err = await streamError(RsaCipher.decryptor(threePrimes, { engine: 'forge' }), [ciphertext])
        expect(err).to.be.instanceOf(P2snError)
        expect((err as P2snError).code).to.equal('ERR_P2SN_INVALID_ARGUMENT')
      })
    })
  })

  describe('RsaCipher streams', function () {
    it('are object-mode streams both ways', function () {
      const encryptor = RsaCipher.encryptor(pair)
      const decryptor = RsaCipher.decryptor(pair)
      for (const stream of [encryptor, decryptor]) {
        expect(stream.readableObjectMode).to.equal(true)
        expect(stream.writableObjectMode).to.equal(true)
        stream.destroy()
      }
    })

    for (const engine of ENGINES) {
      it(`encrypt each write as one message: strings, Buffers, Uint8Arrays, empty and multi-block (engine ${engine})`, async function () {
        const inputs = ['hello', Buffer.from('buffer'), new Uint8Array([0, 4, 255, 4]), '', message(3 * room + 5), Buffer.alloc(0)]
        const ciphertexts = await collect(RsaCipher.encryptor(pair.publicKey, { engine }), inputs)
        expect(ciphertexts).to.have.length(inputs.length)
        const expected = inputs.map((input) => typeof input === 'string' ? Buffer.from(input, 'utf8') : Buffer.from(input))
        ciphertexts.forEach((ciphertext, i) => {
          expect(Buffer.isBuffer(ciphertext)).to.equal(true)
          expect(ciphertext.length, `message ${i}`).to.equal(Math.max(1, Math.ceil(expected[i]!.length / room)) * k)
          expect(decryptMessage(pair, ciphertext, { engine }).equals(expected[i]!), `message ${i}`).to.equal(true)
        })
      })

      it(`decrypt each write as one message, from Buffers and Uint8Arrays (engine ${engine})`, async function () {
        const plaintexts = [message(0), message(1), message(room), message(room + 1), message(3 * room + 5)]
        const ciphertexts = plaintexts.map((p, i) => {
          const c = encryptMessage(pair, p, { engine })
          return i % 2 === 0 ? c : new Uint8Array(c)
        })
        const out = await collect(RsaCipher.decryptor(pair.privateKey, { engine }), ciphertexts)
        expect(out.map((b) => b.toString('hex'))).to.deep.equal(plaintexts.map((p) => p.toString('hex')))
      })
    }

    it('pipe an encryptor into a decryptor, messages in order, engines crossed', async function () {
      const encryptor = RsaCipher.encryptor(pair, { engine: 'forge' })
      const decryptor = RsaCipher.decryptor(pair, { engine: 'openssl' })
      const inputs = Array.from({ length: 20 }, (_, i) => `message ${i} ` + 'x'.repeat(i * 13))
      const out: string[] = []
      decryptor.on('data', (chunk: Buffer) => out.push(chunk.toString()))
      const finished = new Promise<void>((resolve, reject) => {
        decryptor.once('end', resolve)
        decryptor.once('error', reject)
        encryptor.once('error', reject)
      })
      encryptor.pipe(decryptor)
      for (const input of inputs) encryptor.write(input)
      encryptor.end()
      await finished
      expect(out).to.deep.equal(inputs)
    })

    it('emit ERR_P2SN_BAD_CIPHERTEXT from a decryptor written a ciphertext of the wrong length', async function () {
      const err = await streamError(RsaCipher.decryptor(pair), [Buffer.alloc(5)])
      expect(err).to.be.instanceOf(P2snError)
      expect((err as P2snError).code).to.equal('ERR_P2SN_BAD_CIPHERTEXT')
    })

    it('emit ERR_P2SN_DECRYPT from a decryptor with rejection: \'error\' written a bad padding, after the good messages before it', async function () {
      const decryptor = RsaCipher.decryptor(pair, { rejection: 'error' })
      const out: string[] = []
      decryptor.on('data', (chunk: Buffer) => out.push(chunk.toString()))
      const bad = rawEncrypt(pair, encodedMessage(k, 7, Buffer.alloc(k - 10, 0x41)))
      const err = await streamError(decryptor, [encryptMessage(pair, 'first'), bad])
      expect(err).to.be.instanceOf(P2snError)
      expect((err as P2snError).code).to.equal('ERR_P2SN_DECRYPT')
      expect(out).to.deep.equal(['first'])
    })

    it('emit ERR_P2SN_MESSAGE_TOO_LONG from a strict encryptor and a strict decryptor', async function () {
      const encErr = await streamError(RsaCipher.encryptor(pair, { strict: true }), [message(room + 1)])
      expect(encErr).to.be.instanceOf(P2snError)
      expect((encErr as P2snError).code).to.equal('ERR_P2SN_MESSAGE_TOO_LONG')
      const decErr = await streamError(RsaCipher.decryptor(pair, { strict: true }), [encryptMessage(pair, message(room + 1))])
      expect(decErr).to.be.instanceOf(P2snError)
      expect((decErr as P2snError).code).to.equal('ERR_P2SN_MESSAGE_TOO_LONG')
    })

    it('emit ERR_P2SN_INVALID_ARGUMENT for a message that is not bytes or text', async function () {
      const err = await streamError(RsaCipher.encryptor(pair), [42])
      expect(err).to.be.instanceOf(P2snError)
      expect((err as P2snError).code).to.equal('ERR_P2SN_INVALID_ARGUMENT')
    })

    it('refuse a public key where the decryptor needs a private one with ERR_P2SN_INVALID_ARGUMENT', function () {
      expectP2snErrorSync(() => RsaCipher.decryptor(pair.publicKey as never), 'ERR_P2SN_INVALID_ARGUMENT')
      expectP2snErrorSync(() => RsaCipher.decryptor(pair.publicKey.keyObject), 'ERR_P2SN_INVALID_ARGUMENT')
    })

    for (const side of ['encryptor', 'decryptor'] as const) {
      it(`close quietly on a plain destroy(): ${side}, idle and after some messages`, async function () {
        for (const written of [0, 2]) {
          const stream = side === 'encryptor' ? RsaCipher.encryptor(pair) : RsaCipher.decryptor(pair)
          const errors: unknown[] = []
          stream.on('error', (err: unknown) => errors.push(err))
          stream.resume()
          for (let i = 0; i < written; i++) stream.write(side === 'encryptor' ? 'm' : encryptMessage(pair, 'm'))
          const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()))
          stream.destroy()
          await closed
          await settle()
          expect(errors, `${written} messages written`).to.deep.equal([])
          expect(stream.destroyed).to.equal(true)
        }
      })
    }

    it('emit the error given to destroy(err) (so the quiet-destroy test can see errors)', async function () {
      const stream = RsaCipher.encryptor(pair)
      const boom = new Error('boom')
      const emitted = new Promise((resolve) => stream.once('error', resolve))
      stream.destroy(boom)
      expect(await emitted).to.equal(boom)
    })
  })
})
