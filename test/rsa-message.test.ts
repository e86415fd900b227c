/**
 * The message crypto of the core (core/rsa-message.ts), called directly: no streams. The
 * stream layer's own tests (rsa-cipher.test.ts) cover the same rules through RsaCipher; these
 * check that the functions themselves still refuse what they refused before the move.
 */
import { expect } from 'chai'
import {
  blockLimit, countBlocks, decryptBlock, decryptMessage, decryptsTo, encryptMessage, encryptTo, joinBlocks
} from '../lib/core/rsa-message.js'
import { DEFAULT_MAX_MESSAGE_BLOCKS, forgeEngine, generateKeyPair, opensslEngine, type KeyPair, type RsaEngine } from '../lib/index.js'
import { CIPHERTEXT_CLASSES, ciphertextOf, encodedMessage, rawEncrypt } from './helpers/ciphertext-classes.js'
import { countingEngine } from './helpers/counting-engine.js'
import { expectP2snErrorSync } from './helpers/errors.js'

/** Modulus length in bytes of the 1024-bit test keys, and the plaintext one block holds. */
const K = 128
const ROOM = K - 11

/** `length` bytes that are not all one byte, so that misplaced pieces show. */
function message (length: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (i * 7 + 3) & 0xff))
}

describe('core message crypto (core/rsa-message.ts)', function () {
  let pair: KeyPair

  before(async function () {
    pair = await generateKeyPair({ bits: 1024 })
  })

  describe('round trips', function () {
    for (const length of [0, 1, ROOM, ROOM + 1, 3 * ROOM + 5]) {
      it(`a ${length}-byte message: ${Math.max(1, Math.ceil(length / ROOM))} block(s), and back`, () => {
        const plaintext = message(length)
        const ciphertext = encryptMessage(pair, plaintext)
        expect(ciphertext.length).to.equal(K * Math.max(1, Math.ceil(length / ROOM)))
        expect(decryptMessage(pair, ciphertext)).to.deep.equal(plaintext)
      })
    }

    it('across engines: encrypted with forge, decrypted with openssl, and the other way', () => {
      const plaintext = message(2 * ROOM)
      expect(decryptMessage(pair, encryptMessage(pair, plaintext, { engine: 'forge' }))).to.deep.equal(plaintext)
      expect(decryptMessage(pair, encryptMessage(pair, plaintext), { engine: 'forge' })).to.deep.equal(plaintext)
    })

    it('encryptTo, countBlocks, decryptBlock and joinBlocks, a block at a time, give what decryptMessage gives', () => {
      const plaintext = message(3 * ROOM + 5)
      const ciphertext = encryptTo(pair.publicKey, opensslEngine, plaintext, {})
      const count = countBlocks(pair.privateKey, ciphertext, blockLimit({}), false)
      expect(count).to.equal(4)
      const parts: Buffer[] = []
      let valid = 1
      for (let i = 0; i < count; i++) valid &= decryptBlock(pair.privateKey, forgeEngine, ciphertext, i, parts, 'implicit')
      expect(parts).to.have.length(4)
      expect(valid).to.equal(1)
      expect(joinBlocks(parts, valid, 'error')).to.deep.equal(plaintext)
    })
  })

  describe('encryptTo and encryptMessage refuse', function () {
    it('with strict, a message over one block (ERR_P2SN_MESSAGE_TOO_LONG); one of exactly k − 11 bytes goes', () => {
      expect(encryptTo(pair.publicKey, opensslEngine, message(ROOM), { strict: true })).to.have.length(K)
      const err = expectP2snErrorSync(() => encryptTo(pair.publicKey, opensslEngine, message(ROOM + 1), { strict: true }), 'ERR_P2SN_MESSAGE_TOO_LONG')
      expect(err.message).to.include('strict')
      expectP2snErrorSync(() => encryptMessage(pair, message(ROOM + 1), { strict: true }), 'ERR_P2SN_MESSAGE_TOO_LONG')
    })
  })

  describe('blockLimit', function () {
    it('is maxMessageBlocks, the default without it, and one with strict', () => {
      expect(blockLimit({})).to.equal(DEFAULT_MAX_MESSAGE_BLOCKS)
      expect(blockLimit({ maxMessageBlocks: 3 })).to.equal(3)
      expect(blockLimit({ maxMessageBlocks: Infinity })).to.equal(Infinity)
      expect(blockLimit({ maxMessageBlocks: 3, strict: true })).to.equal(1)
    })

    it('refuses a maxMessageBlocks that is not a whole number of at least 1, even with strict', () => {
      for (const maxMessageBlocks of [0, -1, 1.5, Number.NaN]) {
        expectP2snErrorSync(() => blockLimit({ maxMessageBlocks }), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => blockLimit({ maxMessageBlocks, strict: true }), 'ERR_P2SN_INVALID_ARGUMENT')
      }
    })
  })

  describe('countBlocks and decryptMessage refuse, before any private-key operation', function () {
    /** Runs decryptMessage with an engine that counts, and checks that it threw `code` with no RSA done. */
    function refusedUnread (ciphertext: Buffer, options: Parameters<typeof decryptMessage>[2], code: 'ERR_P2SN_BAD_CIPHERTEXT' | 'ERR_P2SN_MESSAGE_TOO_LONG'): string {
      const counting = countingEngine()
      const err = expectP2snErrorSync(() => decryptMessage(pair, ciphertext, { ...options, engine: counting.engine }), code)
      expect(counting.decrypted()).to.equal(0)
      return err.message
    }

    it('a length that is not whole k-byte blocks, or nothing (ERR_P2SN_BAD_CIPHERTEXT)', () => {
      const block = encryptMessage(pair, message(10))
      for (const ciphertext of [Buffer.alloc(0), block.subarray(1), Buffer.concat([block, Buffer.alloc(1)])]) {
        refusedUnread(ciphertext, {}, 'ERR_P2SN_BAD_CIPHERTEXT')
        expectP2snErrorSync(() => countBlocks(pair.privateKey, ciphertext, 32, false), 'ERR_P2SN_BAD_CIPHERTEXT')
      }
    })

    it('a block equal to the modulus, or above it, in any place (ERR_P2SN_BAD_CIPHERTEXT)', () => {
      const good = encryptMessage(pair, message(10))
      const modulus = Buffer.from(pair.publicKey.numbers.n)
      expect(modulus).to.have.length(K)
      const above = Buffer.alloc(K, 0xff)
      for (const ciphertext of [modulus, above, Buffer.concat([good, modulus]), Buffer.concat([good, good, above])]) {
        const text = refusedUnread(ciphertext, {}, 'ERR_P2SN_BAD_CIPHERTEXT')
        expect(text).to.include('modulus')
      }
    })

    it('more blocks than maxMessageBlocks, or than one with strict (ERR_P2SN_MESSAGE_TOO_LONG); as many is fine', () => {
      const three = encryptMessage(pair, message(2 * ROOM + 1))
      expect(refusedUnread(three, { maxMessageBlocks: 2 }, 'ERR_P2SN_MESSAGE_TOO_LONG')).to.include('maxMessageBlocks (2)')
      expect(refusedUnread(three, { strict: true }, 'ERR_P2SN_MESSAGE_TOO_LONG')).to.include('strict')
      expect(countBlocks(pair.privateKey, three, 3, false)).to.equal(3)
      expect(decryptMessage(pair, three, { maxMessageBlocks: 3 })).to.deep.equal(message(2 * ROOM + 1))
    })
  })

  describe('bad padding', function () {
    /** A block whose padding is broken (no separator), for this key. */
    function badBlock (): Buffer {
      const em = encodedMessage(K, K - 3 - 8, message(8))
      em[K - 9] = 0x5a
      return rawEncrypt(pair, em)
    }

    it('decryptBlock says 0 and still gives a synthetic message, the same with either engine', () => {
      const block = badBlock()
      const first: Buffer[] = []
      const second: Buffer[] = []
      expect(decryptBlock(pair.privateKey, opensslEngine, block, 0, first, 'error')).to.equal(0)
      expect(decryptBlock(pair.privateKey, forgeEngine, block, 0, second, 'error')).to.equal(0)
      expect(first).to.have.length(1)
      expect(first[0]).to.deep.equal(second[0])
      // Without 'error', OpenSSL's own implicit rejection may do it (OpenSSL 3.2+): the same bytes.
      const third: Buffer[] = []
      decryptBlock(pair.privateKey, opensslEngine, block, 0, third, 'implicit')
      expect(third[0]).to.deep.equal(second[0])
    })

    it('implicit (default): a synthetic message, no error; with rejection \'error\': ERR_P2SN_DECRYPT, whichever block is bad', () => {
      const good = encryptMessage(pair, message(ROOM))
      const bad = badBlock()
      expect(decryptMessage(pair, bad)).to.deep.equal(decryptMessage(pair, bad))
      for (const ciphertext of [bad, Buffer.concat([good, bad]), Buffer.concat([bad, good])]) {
        expect(() => decryptMessage(pair, ciphertext)).not.to.throw()
        expectP2snErrorSync(() => decryptMessage(pair, ciphertext, { rejection: 'error' }), 'ERR_P2SN_DECRYPT')
      }
    })

    it('joinBlocks fails only with rejection \'error\' and valid 0', () => {
      const parts = [Buffer.from('ab'), Buffer.from('cd')]
      expect(joinBlocks(parts, 1, 'error')).to.deep.equal(Buffer.from('abcd'))
      expect(joinBlocks(parts, 0, 'implicit')).to.deep.equal(Buffer.from('abcd'))
      expect(joinBlocks(parts, 0, undefined)).to.deep.equal(Buffer.from('abcd'))
      expectP2snErrorSync(() => joinBlocks(parts, 0, 'error'), 'ERR_P2SN_DECRYPT')
    })
  })

  describe('decryptsTo (the handshake\'s key check)', function () {
    const KEYCHECK = Buffer.from('P2SN:KEYCHECK')

    it('is true for P2SN:KEYCHECK encrypted to the key, with either engine, and false for anything else', function () {
      for (const engine of [opensslEngine, forgeEngine]) {
        expect(decryptsTo(pair.privateKey, encryptMessage(pair, KEYCHECK), KEYCHECK, engine), engine.name).to.equal(true)
        for (const other of ['P2SN:KEYCHECk', 'P2SN:KEYCHECK ', 'P2SN:KEYCHEC', '']) {
          expect(decryptsTo(pair.privateKey, encryptMessage(pair, other), KEYCHECK, engine), `${engine.name}: "${other}"`).to.equal(false)
        }
      }
    })

    it('is false for every class of bad padding, as for a good block of another message, and true only for a good block of it', function () {
      for (const cls of CIPHERTEXT_CLASSES) {
        expect(decryptsTo(pair.privateKey, ciphertextOf(cls, pair, KEYCHECK), KEYCHECK, opensslEngine), cls).to.equal(cls === 'valid')
        expect(decryptsTo(pair.privateKey, ciphertextOf(cls, pair, message(13)), KEYCHECK, opensslEngine), `${cls}, another message`).to.equal(false)
      }
    })

    it('refuses what decryptMessage with strict refuses, before any private-key operation', function () {
      const { engine, decrypted } = countingEngine()
      const one = encryptMessage(pair, KEYCHECK)
      expectP2snErrorSync(() => decryptsTo(pair.privateKey, one.subarray(1), KEYCHECK, engine), 'ERR_P2SN_BAD_CIPHERTEXT')
      expectP2snErrorSync(() => decryptsTo(pair.privateKey, Buffer.concat([one, one]), KEYCHECK, engine), 'ERR_P2SN_MESSAGE_TOO_LONG')
      expectP2snErrorSync(() => decryptsTo(pair.privateKey, Buffer.alloc(K, 0xff), KEYCHECK, engine), 'ERR_P2SN_BAD_CIPHERTEXT')
      expect(decrypted()).to.equal(0)
    })

    it('reports an engine that fails as ERR_P2SN_ENGINE, this side\'s fault', function () {
      const broken: RsaEngine = { name: 'openssl', encryptBlock: opensslEngine.encryptBlock, decryptRaw: () => { throw new Error('no raw rsa here') } }
      expectP2snErrorSync(() => decryptsTo(pair.privateKey, encryptMessage(pair, KEYCHECK), KEYCHECK, broken), 'ERR_P2SN_ENGINE')
    })

    it('asks an engine that rejects implicitly itself that way first, as decryptMessage does, and raw RSA only when it declines', function () {
      const asked: string[] = []
      const implicitOnly: RsaEngine = {
        name: 'openssl',
        encryptBlock: opensslEngine.encryptBlock,
        decryptRaw: () => { throw new Error('no raw rsa here') },
        decryptImplicit: (key, ciphertext) => {
          asked.push('implicit')
          return decryptMessage(key, ciphertext, { engine: forgeEngine })
        }
      }
      expect(decryptsTo(pair.privateKey, encryptMessage(pair, KEYCHECK), KEYCHECK, implicitOnly)).to.equal(true)
      expect(decryptsTo(pair.privateKey, encryptMessage(pair, 'P2SN:KEYCHECX'), KEYCHECK, implicitOnly)).to.equal(false)
      expect(decryptsTo(pair.privateKey, ciphertextOf('wrong block type', pair, KEYCHECK), KEYCHECK, implicitOnly)).to.equal(false)
      expect(asked).to.deep.equal(['implicit', 'implicit', 'implicit'])
      const declining: RsaEngine = {
        ...forgeEngine,
        decryptRaw: (key, ciphertext) => {
          asked.push('raw')
          return forgeEngine.decryptRaw(key, ciphertext)
        },
        decryptImplicit: () => undefined
      }
      expect(decryptsTo(pair.privateKey, encryptMessage(pair, KEYCHECK), KEYCHECK, declining)).to.equal(true)
      expect(asked.at(-1)).to.equal('raw')
    })
  })
})
