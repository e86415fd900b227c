import crypto from 'node:crypto'
import util from 'node:util'
import { expect } from 'chai'
import {
  decryptMessage, encryptMessage, fingerprint, generateKeyPair, P2snError, parsePrivateKey, parsePublicKey, PrivateKey,
  PublicKey, RsaCipher, toPem, type KeyPair
} from '../lib/index.js'
import { expectP2snError, expectP2snErrorSync, thrown } from './helpers/errors.js'
import { loadSessions, toPemBlock } from './helpers/fixtures.js'

// ---- DER by hand, for keys no generator makes ------------------------------------------------

function derLength (length: number): Buffer {
  if (length < 0x80) return Buffer.from([length])
  const bytes: number[] = []
  for (let v = length; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

function tlv (tag: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body])
}

function derInteger (value: bigint): Buffer {
  let hex = value.toString(16)
  if (hex.length % 2 === 1) hex = '0' + hex
  let bytes = Buffer.from(hex, 'hex')
  if ((bytes[0]! & 0x80) !== 0) bytes = Buffer.concat([Buffer.from([0]), bytes])
  return tlv(0x02, bytes)
}

/** PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`. */
function rsaPublicKeyDer (n: bigint, e: bigint): Buffer {
  return tlv(0x30, Buffer.concat([derInteger(n), derInteger(e)]))
}

/** An odd number of exactly `bits` bits: a stand-in modulus (nothing here factors it). */
function fakeModulus (bits: number): bigint {
  return (1n << BigInt(bits - 1)) | (0x1234567n << 64n) | 1n
}

/** The same hand-built key as a KeyObject and as PKCS#1 PEM. */
function handBuilt (n: bigint, e: bigint): { keyObject: crypto.KeyObject, pem: string } {
  const der = rsaPublicKeyDer(n, e)
  return { keyObject: crypto.createPublicKey({ key: der, format: 'der', type: 'pkcs1' }), pem: toPemBlock('RSA PUBLIC KEY', der) }
}

/** The DER inside a PEM block, read without node:crypto. */
function pemBody (pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
}

function expectedFingerprint (pkcs1PublicPem: string): string {
  return 'SHA256:' + crypto.createHash('sha256').update(pemBody(pkcs1PublicPem)).digest('base64').replace(/=+$/, '')
}

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/

describe('keys (keys.ts)', function () {
  const sessions = loadSessions()
  const recordedKeys = sessions.flatMap((s) => [
    { name: `${s.file} server`, ...s.server },
    { name: `${s.file} client`, ...s.client }
  ])

  describe('generateKeyPair', function () {
    it('makes a 2048-bit key with exponent 65537 by default', async function () {
      this.timeout(60000)
      const pair = await generateKeyPair()
      expect(pair.privateKey).to.be.instanceOf(PrivateKey)
      expect(pair.publicKey).to.be.instanceOf(PublicKey)
      expect(pair.privateKey.bits).to.equal(2048)
      expect(pair.publicKey.bits).to.equal(2048)
      expect(pair.publicKey.size).to.equal(256)
      expect(pair.publicKey.maxBlockPlaintext).to.equal(245)
      expect(pair.publicKey.keyObject.asymmetricKeyDetails?.publicExponent).to.equal(65537n)
      expect(pair.privateKey.publicKey.equals(pair.publicKey)).to.equal(true)
      expect(decryptMessage(pair, encryptMessage(pair, 'default')).toString()).to.equal('default')
    })

    it('makes a 1024-bit key with { bits: 1024 }', async function () {
      const pair = await generateKeyPair({ bits: 1024 })
      expect(pair.privateKey.bits).to.equal(1024)
      expect(pair.privateKey.size).to.equal(128)
      expect(pair.publicKey.keyObject.asymmetricKeyDetails?.publicExponent).to.equal(65537n)
    })

    it('makes a new key every time', async function () {
      const [a, b] = await Promise.all([generateKeyPair({ bits: 1024 }), generateKeyPair({ bits: 1024 })])
      expect(a.publicKey.equals(b.publicKey)).to.equal(false)
      expect(a.publicKey.fingerprint).not.to.equal(b.publicKey.fingerprint)
    })

    for (const bits of [1000, 1023, 16385, 1.5, 0, -2048, Number.NaN, Infinity]) {
      it(`rejects { bits: ${bits} } with ERR_P2SN_INVALID_ARGUMENT`, async function () {
        await expectP2snError(generateKeyPair({ bits }), 'ERR_P2SN_INVALID_ARGUMENT')
      })
    }

    it('rejects bits given as a string with ERR_P2SN_INVALID_ARGUMENT', async function () {
      await expectP2snError(generateKeyPair({ bits: '2048' as never }), 'ERR_P2SN_INVALID_ARGUMENT')
    })
  })

  describe('parse and write PEM as Python\'s rsa package does', function () {
    it('has recorded keys to compare with', function () {
      expect(recordedKeys.length).to.equal(2 * sessions.length)
      expect(sessions.length).to.be.at.least(6)
    })

    for (const key of recordedKeys) {
      it(`${key.name} (${key.bits} bits): private and public PEM back byte for byte`, function () {
        expect(key.privateKeyPem).to.match(/^-----BEGIN RSA PRIVATE KEY-----\n/)
        expect(key.publicKeyPem).to.match(/^-----BEGIN RSA PUBLIC KEY-----\n/)
        const pair = parsePrivateKey(key.privateKeyPem)
        expect(pair.privateKey.bits).to.equal(key.bits)
        expect(pair.privateKey.toPem()).to.equal(key.privateKeyPem)
        expect(toPem(pair)).to.equal(key.privateKeyPem)
        expect(toPem(pair.privateKey)).to.equal(key.privateKeyPem)
        expect(pair.publicKey.toPem()).to.equal(key.publicKeyPem)
        expect(toPem(pair.publicKey)).to.equal(key.publicKeyPem)
        const publicKey = parsePublicKey(key.publicKeyPem)
        expect(publicKey.toPem()).to.equal(key.publicKeyPem)
        expect(publicKey.equals(pair.publicKey)).to.equal(true)
        expect(Buffer.from(publicKey.der).equals(pemBody(key.publicKeyPem))).to.equal(true)
      })

      it(`${key.name}: PKCS#8 and SPKI input, and PEM bytes, give the same PKCS#1 PEM`, function () {
        const keyObject = crypto.createPrivateKey(key.privateKeyPem)
        const pkcs8 = keyObject.export({ type: 'pkcs8', format: 'pem' }) as string
        const spki = crypto.createPublicKey(keyObject).export({ type: 'spki', format: 'pem' }) as string
        expect(pkcs8).to.match(/^-----BEGIN PRIVATE KEY-----\n/)
        expect(spki).to.match(/^-----BEGIN PUBLIC KEY-----\n/)
        expect(parsePrivateKey(pkcs8).privateKey.toPem()).to.equal(key.privateKeyPem)
        expect(parsePrivateKey(pkcs8).publicKey.toPem()).to.equal(key.publicKeyPem)
        expect(parsePublicKey(spki).toPem()).to.equal(key.publicKeyPem)
        expect(parsePrivateKey(Buffer.from(key.privateKeyPem)).privateKey.toPem()).to.equal(key.privateKeyPem)
        expect(parsePublicKey(new Uint8Array(Buffer.from(spki))).toPem()).to.equal(key.publicKeyPem)
      })
    }

    it('reads a private PEM as a public key (its public half)', function () {
      const key = recordedKeys[0]!
      expect(parsePublicKey(key.privateKeyPem).toPem()).to.equal(key.publicKeyPem)
    })

    it('reads PEM with \\r\\n line ends (as node-forge writes it) and writes \\n', function () {
      const key = recordedKeys[0]!
      expect(parsePrivateKey(key.privateKeyPem.replace(/\n/g, '\r\n')).privateKey.toPem()).to.equal(key.privateKeyPem)
      expect(parsePublicKey(key.publicKeyPem.replace(/\n/g, '\r\n')).toPem()).to.equal(key.publicKeyPem)
    })

    it('writes 64-character lines ending in \\n, as the recorded keys have them', async function () {
      const pair = await generateKeyPair({ bits: 1024 })
      for (const pem of [pair.privateKey.toPem(), pair.publicKey.toPem()]) {
        const lines = pem.split('\n')
        expect(lines.at(-1)).to.equal('')
        expect(pem).not.to.include('\r')
        for (const line of lines.slice(1, -3)) expect(line).to.have.length(64)
      }
    })
  })

  describe('fingerprint', function () {
    for (const key of recordedKeys) {
      it(`${key.name}: SHA256: and unpadded Base64 of SHA-256 over the PKCS#1 DER`, function () {
        const expected = expectedFingerprint(key.publicKeyPem)
        expect(expected).to.match(FINGERPRINT)
        const pair = parsePrivateKey(key.privateKeyPem)
        expect(pair.publicKey.fingerprint).to.equal(expected)
        expect(pair.publicKey.fingerprint).to.match(FINGERPRINT)
      })
    }

    it('is the same from a private key, a public key, a key pair, PEM text of any kind and key objects', function () {
      const key = recordedKeys[0]!
      const expected = expectedFingerprint(key.publicKeyPem)
      const pair = parsePrivateKey(key.privateKeyPem)
      const keyObject = crypto.createPrivateKey(key.privateKeyPem)
      const inputs = [
        pair, pair.privateKey, pair.publicKey, parsePublicKey(key.publicKeyPem),
        key.privateKeyPem, key.publicKeyPem, Buffer.from(key.publicKeyPem),
        keyObject.export({ type: 'pkcs8', format: 'pem' }) as string,
        crypto.createPublicKey(keyObject).export({ type: 'spki', format: 'pem' }) as string,
        keyObject, crypto.createPublicKey(keyObject)
      ]
      for (const [i, input] of inputs.entries()) expect(fingerprint(input), `input ${i}`).to.equal(expected)
    })

    it('differs between keys', function () {
      const prints = new Set(recordedKeys.map((key) => fingerprint(key.publicKeyPem)))
      expect(prints.size).to.equal(recordedKeys.length)
    })
  })

  describe('size limits', function () {
    it('accepts a 1023-bit modulus (k = 128 bytes)', function () {
      const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 1023 })
      expect(privateKey.asymmetricKeyDetails?.modulusLength, 'node:crypto made a 1023-bit key').to.equal(1023)
      const pair = parsePrivateKey(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
      expect(pair.privateKey.bits).to.equal(1023)
      expect(pair.privateKey.size).to.equal(128)
      expect(parsePublicKey(publicKey.export({ type: 'spki', format: 'pem' }) as string).bits).to.equal(1023)
      expect(new PublicKey(publicKey).size).to.equal(128)
    })

    it('accepts 1017 bits, the smallest modulus of 128 bytes, and refuses 1016 bits (127 bytes)', function () {
      const small = crypto.generateKeyPairSync('rsa', { modulusLength: 1017 })
      expect(parsePrivateKey(small.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string).privateKey.size).to.equal(128)
      const tooSmall = crypto.generateKeyPairSync('rsa', { modulusLength: 1016 })
      expectP2snErrorSync(() => parsePrivateKey(tooSmall.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string), 'ERR_P2SN_KEY_TOO_SMALL')
    })

    for (const bits of [1016, 512]) {
      it(`refuses a ${bits}-bit key with ERR_P2SN_KEY_TOO_SMALL, however it is given`, function () {
        const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: bits })
        expect(publicKey.asymmetricKeyDetails?.modulusLength).to.equal(bits)
        const code = 'ERR_P2SN_KEY_TOO_SMALL'
        expectP2snErrorSync(() => parsePrivateKey(privateKey.export({ type: 'pkcs1', format: 'pem' }) as string), code)
        expectP2snErrorSync(() => parsePrivateKey(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string), code)
        expectP2snErrorSync(() => parsePublicKey(publicKey.export({ type: 'pkcs1', format: 'pem' }) as string), code)
        expectP2snErrorSync(() => parsePublicKey(publicKey.export({ type: 'spki', format: 'pem' }) as string), code)
        expectP2snErrorSync(() => new PublicKey(publicKey), code)
        expectP2snErrorSync(() => new PrivateKey(privateKey), code)
        expectP2snErrorSync(() => encryptMessage(publicKey, 'x'), code)
        expectP2snErrorSync(() => decryptMessage(privateKey, Buffer.alloc(Math.ceil(bits / 8))), code)
        expectP2snErrorSync(() => fingerprint(publicKey), code)
      })
    }

    it('accepts a 16384-bit modulus (hand-built public key)', function () {
      const { keyObject, pem } = handBuilt(fakeModulus(16384), 65537n)
      expect(new PublicKey(keyObject).bits).to.equal(16384)
      expect(parsePublicKey(pem).bits).to.equal(16384)
      expect(parsePublicKey(pem).size).to.equal(2048)
    })

    for (const bits of [16385, 20000]) {
      it(`refuses a ${bits}-bit modulus with ERR_P2SN_KEY_TOO_LARGE (hand-built public key)`, function () {
        const { keyObject, pem } = handBuilt(fakeModulus(bits), 65537n)
        expect(keyObject.asymmetricKeyDetails?.modulusLength, 'node:crypto read the hand-built key').to.equal(bits)
        expectP2snErrorSync(() => new PublicKey(keyObject), 'ERR_P2SN_KEY_TOO_LARGE')
        expectP2snErrorSync(() => parsePublicKey(pem), 'ERR_P2SN_KEY_TOO_LARGE')
        expectP2snErrorSync(() => parsePublicKey(Buffer.from(pem)), 'ERR_P2SN_KEY_TOO_LARGE')
        expectP2snErrorSync(() => encryptMessage(pem, 'x'), 'ERR_P2SN_KEY_TOO_LARGE')
        expectP2snErrorSync(() => encryptMessage(keyObject, 'x'), 'ERR_P2SN_KEY_TOO_LARGE')
        expectP2snErrorSync(() => RsaCipher.encryptor(pem), 'ERR_P2SN_KEY_TOO_LARGE')
        expectP2snErrorSync(() => fingerprint(pem), 'ERR_P2SN_KEY_TOO_LARGE')
      })
    }
  })

  describe('public exponent', function () {
    const n = fakeModulus(2048)

    for (const [name, e] of [['1', 1n], ['2', 2n], ['65536 (even)', 65536n], ['65538 (even)', 65538n], ['2^64 + 1 (over 64 bits)', 2n ** 64n + 1n]] as const) {
      it(`refuses exponent ${name} with ERR_P2SN_BAD_EXPONENT (hand-built PKCS#1 RSAPublicKey)`, function () {
        const { keyObject, pem } = handBuilt(n, e)
        expect(keyObject.asymmetricKeyDetails?.publicExponent, 'node:crypto read the hand-built key').to.equal(e)
        expectP2snErrorSync(() => new PublicKey(keyObject), 'ERR_P2SN_BAD_EXPONENT')
        expectP2snErrorSync(() => parsePublicKey(pem), 'ERR_P2SN_BAD_EXPONENT')
        expectP2snErrorSync(() => encryptMessage(pem, 'x'), 'ERR_P2SN_BAD_EXPONENT')
        expectP2snErrorSync(() => fingerprint(keyObject), 'ERR_P2SN_BAD_EXPONENT')
      })
    }

    for (const e of [3n, 65537n, 2n ** 64n - 1n]) {
      it(`accepts exponent ${e}`, function () {
        const { keyObject, pem } = handBuilt(n, e)
        expect(BigInt('0x' + new PublicKey(keyObject).numbers.e.toString('hex'))).to.equal(e)
        expect(parsePublicKey(pem).toPem()).to.equal(pem)
      })
    }
  })

  describe('what is not an RSA key', function () {
    const notKeys: Array<[string, string]> = [
      ['an empty string', ''],
      ['garbage text', 'garbage'],
      ['a PEM block of garbage', '-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END RSA PRIVATE KEY-----\n'],
      ['a public PEM block of garbage', '-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n']
    ]

    it('refuses garbage, truncated PEM and bad Base64 with ERR_P2SN_BAD_KEY', function () {
      const key = recordedKeys[0]!
      const cases: Array<[string, string]> = [
        ...notKeys,
        ['a truncated private PEM', key.privateKeyPem.slice(0, 300) + '\n-----END RSA PRIVATE KEY-----\n'],
        ['a truncated public PEM', key.publicKeyPem.slice(0, 100) + '\n-----END RSA PUBLIC KEY-----\n']
      ]
      for (const [name, pem] of cases) {
        expect(thrown(() => parsePrivateKey(pem)), name).to.be.instanceOf(P2snError)
        expectP2snErrorSync(() => parsePrivateKey(pem), 'ERR_P2SN_BAD_KEY')
        expectP2snErrorSync(() => parsePublicKey(pem), 'ERR_P2SN_BAD_KEY')
        expectP2snErrorSync(() => decryptMessage(pem, Buffer.alloc(128)), 'ERR_P2SN_BAD_KEY')
        expectP2snErrorSync(() => encryptMessage(pem, 'x'), 'ERR_P2SN_BAD_KEY')
      }
    })

    it('keeps the underlying error as cause', function () {
      const err = expectP2snErrorSync(() => parsePrivateKey('garbage'), 'ERR_P2SN_BAD_KEY')
      expect(err.cause).to.be.instanceOf(Error)
    })

    for (const [type, options] of [['EC (P-256)', { namedCurve: 'P-256' }], ['Ed25519', undefined]] as const) {
      it(`refuses an ${type} key with ERR_P2SN_BAD_KEY, as PEM and as a key object`, function () {
        const { privateKey, publicKey } = type === 'Ed25519'
          ? crypto.generateKeyPairSync('ed25519')
          : crypto.generateKeyPairSync('ec', options!)
        const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
        const publicPem = publicKey.export({ type: 'spki', format: 'pem' }) as string
        expectP2snErrorSync(() => parsePrivateKey(privatePem), 'ERR_P2SN_BAD_KEY')
        expectP2snErrorSync(() => parsePublicKey(publicPem), 'ERR_P2SN_BAD_KEY')
        expectP2snErrorSync(() => parsePublicKey(privatePem), 'ERR_P2SN_BAD_KEY')
        expectP2snErrorSync(() => new PrivateKey(privateKey), 'ERR_P2SN_BAD_KEY')
        expectP2snErrorSync(() => new PublicKey(publicKey), 'ERR_P2SN_BAD_KEY')
        expectP2snErrorSync(() => encryptMessage(publicKey, 'x'), 'ERR_P2SN_BAD_KEY')
      })
    }

    it('refuses an encrypted private PEM (PKCS#8 and PKCS#1 with a passphrase) with ERR_P2SN_BAD_KEY', function () {
      const keyObject = crypto.createPrivateKey(recordedKeys[0]!.privateKeyPem)
      const encrypted = [
        keyObject.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }) as string,
        keyObject.export({ type: 'pkcs1', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }) as string
      ]
      expect(encrypted[0]).to.match(/^-----BEGIN ENCRYPTED PRIVATE KEY-----/)
      expect(encrypted[1]).to.include('Proc-Type: 4,ENCRYPTED')
      for (const pem of encrypted) {
        expectP2snErrorSync(() => parsePrivateKey(pem), 'ERR_P2SN_BAD_KEY')
        expectP2snErrorSync(() => parsePublicKey(pem), 'ERR_P2SN_BAD_KEY')
        expectP2snErrorSync(() => decryptMessage(pem, Buffer.alloc(128)), 'ERR_P2SN_BAD_KEY')
      }
    })

    it('refuses what is neither PEM text nor a key with ERR_P2SN_INVALID_ARGUMENT', function () {
      for (const value of [42, null, undefined, {}, ['pem']]) {
        expectP2snErrorSync(() => encryptMessage(value as never, 'x'), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => decryptMessage(value as never, Buffer.alloc(128)), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => fingerprint(value as never), 'ERR_P2SN_INVALID_ARGUMENT')
      }
    })

    it('refuses a non-string, non-buffer PEM given to parsePrivateKey / parsePublicKey with ERR_P2SN_INVALID_ARGUMENT', function () {
      // pemText() throws ERR_P2SN_INVALID_ARGUMENT for these; the parse functions must not turn it into ERR_P2SN_BAD_KEY.
      expectP2snErrorSync(() => parsePrivateKey(42 as never), 'ERR_P2SN_INVALID_ARGUMENT')
      expectP2snErrorSync(() => parsePublicKey(42 as never), 'ERR_P2SN_INVALID_ARGUMENT')
    })
  })

  describe('a public key where a private key is needed', function () {
    let pair: KeyPair

    before(async function () {
      pair = await generateKeyPair({ bits: 1024 })
    })

    it('refuses a PublicKey and a public KeyObject with ERR_P2SN_INVALID_ARGUMENT', function () {
      const ciphertext = encryptMessage(pair, 'x')
      expectP2snErrorSync(() => decryptMessage(pair.publicKey as never, ciphertext), 'ERR_P2SN_INVALID_ARGUMENT')
      expectP2snErrorSync(() => decryptMessage(pair.publicKey.keyObject, ciphertext), 'ERR_P2SN_INVALID_ARGUMENT')
      expectP2snErrorSync(() => new PrivateKey(pair.publicKey.keyObject), 'ERR_P2SN_INVALID_ARGUMENT')
      expectP2snErrorSync(() => RsaCipher.decryptor(pair.publicKey.keyObject), 'ERR_P2SN_INVALID_ARGUMENT')
      expectP2snErrorSync(() => RsaCipher.decryptor({ publicKey: pair.publicKey } as never), 'ERR_P2SN_INVALID_ARGUMENT')
    })

    it('refuses public PEM (PKCS#1 and SPKI, text and bytes) with ERR_P2SN_INVALID_ARGUMENT', function () {
      const ciphertext = encryptMessage(pair, 'x')
      const spki = pair.publicKey.keyObject.export({ type: 'spki', format: 'pem' }) as string
      for (const pem of [pair.publicKey.toPem(), spki, Buffer.from(spki)]) {
        expectP2snErrorSync(() => parsePrivateKey(pem), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => decryptMessage(pem, ciphertext), 'ERR_P2SN_INVALID_ARGUMENT')
        expectP2snErrorSync(() => RsaCipher.decryptor(pem), 'ERR_P2SN_INVALID_ARGUMENT')
      }
    })
  })

  describe('secrets stay out of logs', function () {
    let pair: KeyPair
    let secrets: Array<[string, string]>

    before(async function () {
      pair = await generateKeyPair({ bits: 1024 })
      const jwk = pair.privateKey.keyObject.export({ format: 'jwk' })
      const pem = pair.privateKey.toPem()
      secrets = []
      for (const name of ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const) {
        const bytes = Buffer.from(jwk[name]!, 'base64url')
        secrets.push([`${name} (hex)`, bytes.toString('hex').slice(0, 32)])
        secrets.push([`${name} (HEX)`, bytes.toString('hex').toUpperCase().slice(0, 32)])
        secrets.push([`${name} (base64)`, bytes.toString('base64').slice(0, 24)])
        secrets.push([`${name} (base64url)`, jwk[name]!.slice(0, 24)])
        secrets.push([`${name} (decimal)`, BigInt('0x' + bytes.toString('hex')).toString().slice(0, 30)])
        secrets.push([`${name} (as util.inspect shows a Buffer)`, [...bytes.subarray(0, 12)].map((b) => b.toString(16).padStart(2, '0')).join(' ')])
      }
      secrets.push(['the PEM header', 'PRIVATE KEY'])
      for (const line of pem.split('\n').filter((l) => l.length === 64)) secrets.push(['a PEM line', line])
      // Make sure the caches of secret numbers are filled before looking.
      expect(pair.privateKey.numbers.d).to.be.instanceOf(Buffer)
      expect(pair.privateKey.rejectionKey).to.have.length(32)
      decryptMessage(pair, encryptMessage(pair, 'warm up'), { engine: 'forge' })
    })

    function expectClean (text: string, where: string): void {
      for (const [name, secret] of secrets) expect(text.includes(secret), `${where} shows ${name}`).to.equal(false)
    }

    it('util.inspect of a PrivateKey shows its size and fingerprint only', function () {
      const shown = util.inspect(pair.privateKey)
      expect(shown).to.include('1024')
      expect(shown).to.include(pair.publicKey.fingerprint)
      expectClean(shown, 'util.inspect')
    })

    it('util.inspect with showHidden and unlimited depth, %o, %O and a key pair or nested object', function () {
      const outputs = [
        util.inspect(pair.privateKey, { showHidden: true, depth: Infinity }),
        util.inspect(pair, { showHidden: true, depth: Infinity }),
        util.inspect({ nested: { deeper: [pair.privateKey] } }, { depth: Infinity }),
        util.format('%o %O %s', pair.privateKey, pair.privateKey, pair.privateKey),
        util.format('%o', pair)
      ]
      outputs.forEach((text, i) => expectClean(text, `output ${i}`))
    })

    it('JSON.stringify of a PrivateKey and of a key pair', function () {
      const json = JSON.stringify(pair.privateKey)
      expect(JSON.parse(json)).to.deep.equal({ type: 'rsa-private-key', bits: 1024, fingerprint: pair.publicKey.fingerprint })
      expectClean(json, 'JSON.stringify(privateKey)')
      expectClean(JSON.stringify(pair), 'JSON.stringify(pair)')
      expectClean(JSON.stringify({ key: pair.privateKey }), 'JSON.stringify({ key })')
    })

    it('the check finds the secrets where they are (PEM, JWK, a Buffer of d), so it can fail', function () {
      const jwk = pair.privateKey.keyObject.export({ format: 'jwk' })
      expect(() => expectClean(pair.privateKey.toPem(), 'the PEM')).to.throw()
      expect(() => expectClean(JSON.stringify(jwk), 'the JWK')).to.throw()
      expect(() => expectClean(util.inspect(pair.privateKey.numbers.d), 'a Buffer of d')).to.throw()
      expect(() => expectClean(BigInt('0x' + pair.privateKey.numbers.d!.toString('hex')).toString(), 'd in decimal')).to.throw()
    })
  })
})
