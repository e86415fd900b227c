/**
 * Our implicit rejection against OpenSSL's own (issue 12). OpenSSL 3.2 and later do implicit
 * rejection inside `RSA_PKCS1_PADDING` decryption, and Node 22 and later let `privateDecrypt`
 * use it: there, every ciphertext must decrypt to the same bytes through our code (raw RSA, then
 * `unpadImplicit` in JavaScript) as through OpenSSL's. Valid ciphertexts, every malformed class,
 * and hundreds of random blocks per key size, a 1023-bit modulus (k = 128 with the top bit
 * clear) among them. Skipped, with the reason in its title, where the runtime lacks it (Node 20
 * has OpenSSL 3.0 and refuses PKCS#1 v1.5 private decryption).
 */
import crypto from 'node:crypto'
import { expect } from 'chai'
import { decryptBlock, decryptMessage } from '../lib/core/rsa-message.js'
import { unpadImplicit } from '../lib/implicit-rejection.js'
import { opensslEngine, PrivateKey, type KeyPair } from '../lib/index.js'
import { CIPHERTEXT_CLASSES, ciphertextOf } from './helpers/ciphertext-classes.js'

/** Why this runtime cannot be compared, or undefined when it can. */
function missingNativeRejection (): string | undefined {
  const [major = 0, minor = 0] = process.versions.openssl.split('.').map((part) => Number.parseInt(part, 10))
  if (major < 3 || (major === 3 && minor < 2)) {
    return `this runtime's OpenSSL ${process.versions.openssl} has no implicit rejection (3.2 and later have it)`
  }
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 })
  const ciphertext = crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_PKCS1_PADDING }, Buffer.from('probe'))
  try {
    crypto.privateDecrypt({ key: privateKey, padding: crypto.constants.RSA_PKCS1_PADDING }, ciphertext)
  } catch (err) {
    return `this runtime refuses PKCS#1 v1.5 private decryption (${(err as Error).message})`
  }
  return undefined
}

/** OpenSSL's decryption with its implicit rejection. */
function native (key: PrivateKey, ciphertext: Buffer): Buffer {
  return crypto.privateDecrypt({ key: key.keyObject, padding: crypto.constants.RSA_PKCS1_PADDING }, ciphertext)
}

/** Ours: raw RSA, then our unpadding in JavaScript (what Node 20, Bun, Deno and forge use). */
function ours (key: PrivateKey, ciphertext: Buffer): Buffer {
  return unpadImplicit(opensslEngine.decryptRaw(key, ciphertext), ciphertext, key.rejectionKey).message
}

/**
 * The core's block decryption that channels, layers and workers all use; where the probe found
 * OpenSSL's implicit rejection equal to ours, it is OpenSSL's.
 */
function core (key: PrivateKey, ciphertext: Buffer): Buffer {
  const parts: Buffer[] = []
  decryptBlock(key, opensslEngine, ciphertext, 0, parts, 'implicit')
  return parts[0]!
}

/** A uniformly random block below the modulus. */
function randomBlock (key: PrivateKey): Buffer {
  const modulus = key.publicKey.numbers.n
  for (;;) {
    const block = crypto.randomBytes(key.size)
    if (block.compare(modulus) < 0) return block
  }
}

const missing = missingNativeRejection()
const RANDOM_BLOCKS = 300
const BITS = [1023, 1024, 1031, 2048, 3072]

describe(`implicit rejection equals OpenSSL's own, byte for byte${missing === undefined ? '' : ` (skipped: ${missing})`}`, function () {
  this.timeout(120000)
  before(function () {
    if (missing !== undefined) this.skip()
  })

  for (const bits of BITS) {
    describe(`a ${bits}-bit key`, function () {
      let keys: KeyPair
      before(function () {
        const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: bits })
        const key = new PrivateKey(privateKey)
        keys = { privateKey: key, publicKey: key.publicKey }
        expect(key.publicKey.numbers.n.length).to.equal(key.size)
      })

      it('valid ciphertexts, messages of every length class, the same plaintext', function () {
        for (const length of [0, 1, 2, keys.publicKey.maxBlockPlaintext - 1, keys.publicKey.maxBlockPlaintext]) {
          const message = crypto.randomBytes(length)
          const ciphertext = crypto.publicEncrypt({ key: keys.publicKey.keyObject, padding: crypto.constants.RSA_PKCS1_PADDING }, message)
          expect(ours(keys.privateKey, ciphertext), `${length} bytes`).to.deep.equal(message)
          expect(native(keys.privateKey, ciphertext), `${length} bytes`).to.deep.equal(message)
        }
      })

      it('each malformed class of encoded message: the same synthetic message', function () {
        for (const cls of CIPHERTEXT_CLASSES) {
          for (let i = 0; i < 10; i++) {
            const ciphertext = ciphertextOf(cls, keys, crypto.randomBytes(16))
            expect(ours(keys.privateKey, ciphertext), cls).to.deep.equal(native(keys.privateKey, ciphertext))
          }
        }
      })

      it(`${RANDOM_BLOCKS} random blocks below the modulus: the same bytes every time`, function () {
        let differing = 0
        for (let i = 0; i < RANDOM_BLOCKS; i++) {
          const ciphertext = randomBlock(keys.privateKey)
          const expected = native(keys.privateKey, ciphertext)
          if (!ours(keys.privateKey, ciphertext).equals(expected) || !core(keys.privateKey, ciphertext).equals(expected)) differing++
        }
        expect(differing, 'blocks whose two decryptions differ').to.equal(0)
      })

      it('the engine uses OpenSSL\'s own here, found equal by its probe', function () {
        const ciphertext = randomBlock(keys.privateKey)
        expect(opensslEngine.decryptImplicit?.(keys.privateKey, ciphertext)).to.deep.equal(native(keys.privateKey, ciphertext))
      })

      if (bits >= 1024) {
        it('decryptMessage, the public function, agrees too', function () {
          const ciphertext = randomBlock(keys.privateKey)
          expect(decryptMessage(keys.privateKey, ciphertext)).to.deep.equal(native(keys.privateKey, ciphertext))
        })
      }
    })
  }
})
