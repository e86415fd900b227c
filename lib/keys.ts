/**
 * RSA keys: generate, parse (PKCS#1, PKCS#8, SPKI PEM), write PKCS#1 PEM as Python's `rsa`
 * package does, and fingerprint.
 * @module
 */
import crypto, { type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import { toBuffer } from './arguments.js'
import { P2snError } from './errors.js'
import { DEFAULT_KEY_BITS, MAX_MODULUS_BITS, MIN_MODULUS_BYTES, PKCS1_OVERHEAD } from './protocol.js'

const generateKeyPairAsync = promisify(crypto.generateKeyPair)
const inspectSymbol = Symbol.for('nodejs.util.inspect.custom')
/** Exponents above this make every public operation slow for no security gain; OpenSSL caps them alike. */
const MAX_PUBLIC_EXPONENT = 2n ** 64n - 1n

/**
 * Numbers of a key as big-endian bytes, as an engine without OpenSSL needs them (see
 * {@link RsaEngine}). A public key has `n` and `e` only; a private key has all of them.
 */
export interface RsaNumbers {
  /** The modulus. */
  n: Buffer
  /** The public exponent. */
  e: Buffer
  /** The private exponent. */
  d?: Buffer
  /** The first prime factor of the modulus. */
  p?: Buffer
  /** The second prime factor of the modulus. */
  q?: Buffer
  /** d mod (p − 1), for the Chinese remainder theorem. */
  dp?: Buffer
  /** d mod (q − 1), for the Chinese remainder theorem. */
  dq?: Buffer
  /** The inverse of q mod p, for the Chinese remainder theorem. */
  qi?: Buffer
}

/** An RSA public key, checked against the protocol's size and exponent rules. */
export class PublicKey {
  /** The key for `node:crypto`. */
  readonly keyObject: KeyObject
  /** Modulus length in bits. */
  readonly bits: number
  /** Modulus length in bytes (k): the length of every ciphertext block. */
  readonly size: number
  /** PKCS#1 `RSAPublicKey` DER: what the fingerprint and the wire's PEM are made of. */
  readonly der: Buffer
  #fingerprint: string | undefined
  #numbers: RsaNumbers | undefined
  #pem: string | undefined

  /** Use {@link parsePublicKey} or {@link generateKeyPair}; this checks an OpenSSL key object. */
  constructor (keyObject: KeyObject) {
    const publicObject = keyObject.type === 'private' ? crypto.createPublicKey(keyObject) : keyObject
    checkRsaKey(publicObject)
    this.keyObject = publicObject
    this.bits = publicObject.asymmetricKeyDetails?.modulusLength ?? 0
    this.size = Math.ceil(this.bits / 8)
    this.der = publicObject.export({ type: 'pkcs1', format: 'der' })
  }

  /** Largest plaintext that fits one RSAES-PKCS1-v1_5 block: k − 11 bytes. */
  get maxBlockPlaintext (): number {
    return this.size - PKCS1_OVERHEAD
  }

  /** `SHA256:` and the unpadded Base64 of SHA-256 over the PKCS#1 DER, as ssh prints them. */
  get fingerprint (): string {
    this.#fingerprint ??= fingerprintOf(this.der)
    return this.#fingerprint
  }

  /** The modulus and exponent as big-endian bytes. */
  get numbers (): RsaNumbers {
    this.#numbers ??= jwkNumbers(this.keyObject)
    return this.#numbers
  }

  /** PKCS#1 PEM (`-----BEGIN RSA PUBLIC KEY-----`), 64-character lines, `\n` line ends. */
  toPem (): string {
    // A server sends its key to every client: made once.
    this.#pem ??= this.keyObject.export({ type: 'pkcs1', format: 'pem' }) as string
    return this.#pem
  }

  /** True when both are the same key. */
  equals (other: PublicKey): boolean {
    return this.der.equals(other.der)
  }

  /** What `util.inspect` (and so `console.log`) shows: the size and the fingerprint. */
  [inspectSymbol] (): string {
    return `PublicKey { bits: ${this.bits}, fingerprint: '${this.fingerprint}' }`
  }
}

/**
 * An RSA private key. Its secret parts are never printed: `util.inspect` and `JSON.stringify`
 * show the size and the fingerprint only.
 */
export class PrivateKey {
  /** The key for `node:crypto`. */
  readonly keyObject: KeyObject
  /** The matching public key. */
  readonly publicKey: PublicKey
  #numbers: RsaNumbers | undefined
  #rejectionKey: Buffer | undefined

  /** Use {@link parsePrivateKey} or {@link generateKeyPair}; this checks an OpenSSL key object. */
  constructor (keyObject: KeyObject) {
    if (keyObject.type !== 'private') {
      throw publicForPrivate()
    }
    this.publicKey = new PublicKey(keyObject)
    this.keyObject = keyObject
  }

  /** Modulus length in bits. */
  get bits (): number {
    return this.publicKey.bits
  }

  /** Modulus length in bytes (k). */
  get size (): number {
    return this.publicKey.size
  }

  /** All CRT numbers as big-endian bytes, for an engine without OpenSSL. */
  get numbers (): RsaNumbers {
    this.#numbers ??= jwkNumbers(this.keyObject)
    return this.#numbers
  }

  /**
   * SHA-256 of the private exponent as k big-endian bytes: the HMAC key from which implicit
   * rejection derives each ciphertext's key. Computed once per key.
   */
  get rejectionKey (): Buffer {
    if (this.#rejectionKey === undefined) {
      // Only d is needed, once: the OpenSSL engine never needs the numbers kept on the heap.
      const d = this.#numbers?.d ?? jwkNumbers(this.keyObject).d
      if (d === undefined) throw new P2snError('ERR_P2SN_BAD_KEY', 'the private key has no private exponent; load a complete rsa private key')
      this.#rejectionKey = crypto.createHash('sha256').update(leftPad(d, this.size)).digest()
    }
    return this.#rejectionKey
  }

  /** PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`), byte for byte as Python's `rsa` writes it. */
  toPem (): string {
    return this.keyObject.export({ type: 'pkcs1', format: 'pem' }) as string
  }

  /** What `JSON.stringify` writes: the type, the size and the fingerprint, no secret. */
  toJSON (): object {
    return { type: 'rsa-private-key', bits: this.bits, fingerprint: this.publicKey.fingerprint }
  }

  /** What `util.inspect` (and so `console.log`) shows: the size and the fingerprint, no secret. */
  [inspectSymbol] (): string {
    return `PrivateKey { bits: ${this.bits}, fingerprint: '${this.publicKey.fingerprint}' }`
  }
}

/** A private key with its public key, as {@link generateKeyPair} and {@link parsePrivateKey} return. */
export interface KeyPair {
  /** The public key: the private key's public half, the one to give peers. */
  publicKey: PublicKey
  /** The private key, to keep secret. */
  privateKey: PrivateKey
}

/** Anything that names a public key: a key, a key pair (its public half), a private key, or PEM text. */
export type PublicKeyInput = PublicKey | PrivateKey | KeyPair | KeyObject | string | Uint8Array
/** Anything that names a private key: a key, a key pair, or PEM text. */
export type PrivateKeyInput = PrivateKey | KeyPair | KeyObject | string | Uint8Array

/** Options of {@link generateKeyPair}. */
export interface GenerateKeyPairOptions {
  /** Modulus length in bits, 1024 to 16384. Default 2048. */
  bits?: number
}

/**
 * Generates an RSA key pair with public exponent 65537, off the event loop.
 *
 * @example
 * const { publicKey, privateKey } = await generateKeyPair({ bits: 2048 })
 */
export async function generateKeyPair (options: GenerateKeyPairOptions = {}): Promise<KeyPair> {
  const bits = options.bits ?? DEFAULT_KEY_BITS
  if (!Number.isInteger(bits) || bits < MIN_MODULUS_BYTES * 8 || bits > MAX_MODULUS_BITS) {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `cannot generate a ${String(bits)}-bit key; choose a whole number of bits from ${MIN_MODULUS_BYTES * 8} to ${MAX_MODULUS_BITS}`)
  }
  const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: bits, publicExponent: 0x10001 })
  return pairOf(new PrivateKey(privateKey))
}

/**
 * Reads an RSA private key from PEM: PKCS#1 (`RSA PRIVATE KEY`) or unencrypted PKCS#8
 * (`PRIVATE KEY`).
 *
 * @returns the key pair
 * @throws P2snError `ERR_P2SN_BAD_KEY`, `ERR_P2SN_KEY_TOO_SMALL`, `ERR_P2SN_KEY_TOO_LARGE`, `ERR_P2SN_BAD_EXPONENT`
 */
export function parsePrivateKey (pem: string | Uint8Array): KeyPair {
  const text = pemText(pem)
  let keyObject: KeyObject
  try {
    keyObject = crypto.createPrivateKey({ key: text, format: 'pem' })
  } catch (err) {
    if (isPublicPem(text)) {
      throw publicForPrivate(err)
    }
    throw new P2snError('ERR_P2SN_BAD_KEY', 'could not read the private key; expected an unencrypted rsa private key in pem (pkcs#1 or pkcs#8)', { cause: err })
  }
  return pairOf(new PrivateKey(keyObject))
}

/**
 * Reads an RSA public key from PEM: PKCS#1 (`RSA PUBLIC KEY`) or SPKI (`PUBLIC KEY`). A
 * private key PEM gives its public half.
 *
 * @throws P2snError `ERR_P2SN_BAD_KEY`, `ERR_P2SN_KEY_TOO_SMALL`, `ERR_P2SN_KEY_TOO_LARGE`, `ERR_P2SN_BAD_EXPONENT`
 */
export function parsePublicKey (pem: string | Uint8Array): PublicKey {
  const text = pemText(pem)
  let keyObject: KeyObject
  try {
    keyObject = crypto.createPublicKey({ key: text, format: 'pem' })
  } catch (err) {
    throw new P2snError('ERR_P2SN_BAD_KEY', 'could not read the public key; expected an rsa public key in pem (pkcs#1 or spki)', { cause: err })
  }
  return new PublicKey(keyObject)
}

/**
 * PKCS#1 PEM of a key, as Python's `rsa` writes it. A key pair gives its private key's PEM.
 */
export function toPem (key: PublicKey | PrivateKey | KeyPair): string {
  return isKeyPair(key) ? key.privateKey.toPem() : key.toPem()
}

/**
 * The fingerprint of PKCS#1 `RSAPublicKey` DER, of any key size: `SHA256:` and the unpadded
 * Base64 of its SHA-256, as ssh prints them.
 */
export function fingerprintOf (der: Uint8Array): string {
  return 'SHA256:' + crypto.createHash('sha256').update(der).digest('base64').replace(/=+$/, '')
}

/** The fingerprint of a public key (or of a private key's public half): `SHA256:…`. */
export function fingerprint (key: PublicKeyInput): string {
  return toPublicKey(key).fingerprint
}

/** Turns any {@link PublicKeyInput} into a checked {@link PublicKey}. */
export function toPublicKey (input: PublicKeyInput): PublicKey {
  if (input instanceof PublicKey) return input
  if (input instanceof PrivateKey) return input.publicKey
  if (isKeyPair(input)) return input.publicKey
  if (isKeyObject(input)) return new PublicKey(input)
  if (typeof input === 'string' || input instanceof Uint8Array) return parsePublicKey(input)
  throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'expected a public key, a key pair or pem text')
}

/** Turns any {@link PrivateKeyInput} into a checked {@link PrivateKey}. */
export function toPrivateKey (input: PrivateKeyInput): PrivateKey {
  if (input instanceof PrivateKey) return input
  if (isKeyPair(input)) return input.privateKey
  if (isKeyObject(input)) return new PrivateKey(input)
  if (typeof input === 'string' || input instanceof Uint8Array) return parsePrivateKey(input).privateKey
  throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'expected a private key, a key pair or pem text')
}

/** Turns any {@link PrivateKeyInput} into a key pair. */
export function toKeyPair (input: PrivateKeyInput): KeyPair {
  return isKeyPair(input) ? input : pairOf(toPrivateKey(input))
}

function pairOf (privateKey: PrivateKey): KeyPair {
  return { publicKey: privateKey.publicKey, privateKey }
}

function isKeyPair (value: unknown): value is KeyPair {
  return typeof value === 'object' && value !== null &&
    (value as KeyPair).privateKey instanceof PrivateKey && (value as KeyPair).publicKey instanceof PublicKey
}

function isKeyObject (value: unknown): value is KeyObject {
  return value instanceof crypto.KeyObject
}

function publicForPrivate (cause?: unknown): P2snError {
  return new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'expected a private key but got a public one; pass the private key pem', cause === undefined ? undefined : { cause })
}

function pemText (pem: string | Uint8Array): string {
  if (typeof pem === 'string') return pem
  if (pem instanceof Uint8Array) return toBuffer(pem).toString('latin1')
  throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'expected pem text as a string or a buffer')
}

function isPublicPem (text: string): boolean {
  try {
    crypto.createPublicKey({ key: text, format: 'pem' })
    return true
  } catch {
    return false
  }
}

function checkRsaKey (keyObject: KeyObject): void {
  if (keyObject.asymmetricKeyType !== 'rsa') {
    throw new P2snError('ERR_P2SN_BAD_KEY', `expected an rsa key but got ${String(keyObject.asymmetricKeyType ?? keyObject.type)}; p2sn uses rsa keys only`)
  }
  const bits = keyObject.asymmetricKeyDetails?.modulusLength ?? 0
  const exponent = keyObject.asymmetricKeyDetails?.publicExponent ?? 0n
  if (Math.ceil(bits / 8) < MIN_MODULUS_BYTES) {
    throw new P2snError('ERR_P2SN_KEY_TOO_SMALL', `the rsa key has a ${bits}-bit modulus, below the protocol's 1024-bit floor; use a key of 1024 bits or more (2048 recommended)`)
  }
  if (bits > MAX_MODULUS_BITS) {
    throw new P2snError('ERR_P2SN_KEY_TOO_LARGE', `the rsa key has a ${bits}-bit modulus, above the ${MAX_MODULUS_BITS}-bit limit; use a smaller key`)
  }
  if (exponent < 3n || exponent % 2n === 0n || exponent > MAX_PUBLIC_EXPONENT) {
    throw new P2snError('ERR_P2SN_BAD_EXPONENT', `the rsa key's public exponent ${exponent} is unsafe; the exponent must be odd, at least 3 and at most 64 bits (65537 is usual)`)
  }
  // A product of two odd primes is odd. OpenSSL reads an even modulus but cannot encrypt to
  // it, which would then look like this side's own failure (ERR_P2SN_ENGINE), not the key's.
  const modulus = fromBase64Url(keyObject.export({ format: 'jwk' }).n)
  if (((modulus.at(-1) ?? 0) & 1) === 0) {
    throw new P2snError('ERR_P2SN_BAD_KEY', 'the rsa key\'s modulus is even, so it is no rsa key; the peer sent a damaged or forged key')
  }
}

function jwkNumbers (keyObject: KeyObject): RsaNumbers {
  const jwk = keyObject.export({ format: 'jwk' })
  const numbers: RsaNumbers = { n: fromBase64Url(jwk.n), e: fromBase64Url(jwk.e) }
  if (jwk.d !== undefined) {
    numbers.d = fromBase64Url(jwk.d)
    numbers.p = fromBase64Url(jwk.p)
    numbers.q = fromBase64Url(jwk.q)
    numbers.dp = fromBase64Url(jwk.dp)
    numbers.dq = fromBase64Url(jwk.dq)
    numbers.qi = fromBase64Url(jwk.qi)
  }
  return numbers
}

function fromBase64Url (text: string | undefined): Buffer {
  return Buffer.from(text ?? '', 'base64url')
}

/** Left-pads big-endian bytes with zeros to `length`. */
function leftPad (bytes: Buffer, length: number): Buffer {
  if (bytes.length >= length) return bytes
  const out = Buffer.alloc(length)
  bytes.copy(out, length - bytes.length)
  return out
}
