/**
 * The RSA primitives behind {@link RsaCipher}, with two interchangeable engines: OpenSSL through
 * `node:crypto` (the default) and node-forge (pure JavaScript).
 * @module
 */
import crypto from 'node:crypto'
import forge from 'node-forge'
import { toBuffer } from './arguments.js'
import { P2snError } from './errors.js'
import { unpadImplicit } from './implicit-rejection.js'
import type { PrivateKey, PublicKey, RsaNumbers } from './keys.js'

/**
 * What an engine does: pad-and-encrypt one block, and the raw private-key operation. Unpadding
 * is ours, on top of the raw operation, so both engines reject bad paddings the same way.
 */
export interface RsaEngine {
  /** `'openssl'` or `'forge'`. */
  readonly name: EngineName
  /**
   * RSAES-PKCS1-v1_5 encryption of one block.
   * @param plaintext - at most k − 11 bytes
   * @returns exactly k bytes
   */
  encryptBlock (key: PublicKey, plaintext: Uint8Array): Buffer
  /**
   * Raw RSA: `ciphertext ^ d mod n` as exactly k bytes.
   * @param ciphertext - exactly k bytes, as a number below the modulus (callers check both)
   */
  decryptRaw (key: PrivateKey, ciphertext: Buffer): Buffer
  /**
   * Optional: RSAES-PKCS1-v1_5 decryption of one block with implicit rejection done by the
   * engine itself, which must give byte for byte what {@link RsaEngine.decryptRaw} and our
   * unpadding give; or `undefined` where it cannot, and then those two are used. The OpenSSL
   * engine has it on OpenSSL 3.2 and later (Node 22 and up), where it saves the unpadding's
   * HMACs in JavaScript (about 25 µs a 2048-bit block).
   * @param ciphertext - exactly k bytes, as a number below the modulus (callers check both)
   */
  decryptImplicit? (key: PrivateKey, ciphertext: Buffer): Buffer | undefined
}

/** Names of the engines. */
export type EngineName = 'openssl' | 'forge'

/** OpenSSL through `node:crypto`: about 2,800 private and 40,000 public 2048-bit operations a second here. */
export const opensslEngine: RsaEngine = {
  name: 'openssl',
  encryptBlock (key, plaintext) {
    return crypto.publicEncrypt({ key: key.keyObject, padding: crypto.constants.RSA_PKCS1_PADDING }, plaintext)
  },
  decryptRaw (key, ciphertext) {
    // Node 20 refuses PKCS#1 v1.5 private decryption (CVE-2023-46809); raw RSA is allowed.
    return crypto.privateDecrypt({ key: key.keyObject, padding: crypto.constants.RSA_NO_PADDING }, ciphertext)
  },
  decryptImplicit (key, ciphertext) {
    nativeRejection ??= probeNativeRejection(key)
    return nativeRejection ? pkcs1Decrypt(key, ciphertext) : undefined
  }
}

/** OpenSSL's own PKCS#1 v1.5 decryption: with implicit rejection on OpenSSL 3.2 and later. */
function pkcs1Decrypt (key: PrivateKey, ciphertext: Buffer): Buffer {
  return crypto.privateDecrypt({ key: key.keyObject, padding: crypto.constants.RSA_PKCS1_PADDING }, ciphertext)
}

/** Whether this runtime's OpenSSL does implicit rejection as ours does; known after the first decryption. */
let nativeRejection: boolean | undefined

/**
 * Whether OpenSSL's own implicit rejection gives, for a block with bad padding, the very message
 * our unpadding makes; asked once, with the first key. OpenSSL before 3.2, Node 20's refusal (or
 * its `--security-revert`, which brings the padding oracle back), and Bun's or Deno's crypto all
 * answer no. Two private-key operations per process, where the version allows at all.
 */
function probeNativeRejection (key: PrivateKey): boolean {
  const [major = 0, minor = 0] = (process.versions.openssl ?? '').split('.').map((part) => Number.parseInt(part, 10))
  if (!(major > 3 || (major === 3 && minor >= 2))) return false
  try {
    // Small numbers are below any modulus; their raw decryptions look random, so their padding
    // is bad but for a chance of about 2^-16 each, and such a block is skipped.
    for (let n = 2; n < 10; n++) {
      const block = Buffer.alloc(key.size)
      block[key.size - 1] = n
      const ours = unpadImplicit(opensslEngine.decryptRaw(key, block), block, key.rejectionKey)
      if (ours.valid === 1) continue
      return pkcs1Decrypt(key, block).equals(ours.message)
    }
  } catch {
    // Refused or failed: keep ours.
  }
  return false
}

const forgePublicKeys = new WeakMap<PublicKey, forge.pki.rsa.PublicKey>()
const forgePrivateKeys = new WeakMap<PrivateKey, forge.pki.rsa.PrivateKey>()

function bigInteger (bytes: Buffer | undefined): forge.jsbn.BigInteger {
  return new forge.jsbn.BigInteger(bytes?.toString('hex') ?? '0', 16)
}

function forgePublicKey (key: PublicKey): forge.pki.rsa.PublicKey {
  let forgeKey = forgePublicKeys.get(key)
  if (forgeKey === undefined) {
    const { n, e } = key.numbers
    forgeKey = forge.pki.setRsaPublicKey(bigInteger(n), bigInteger(e))
    forgePublicKeys.set(key, forgeKey)
  }
  return forgeKey
}

/**
 * The key as node-forge's, made once per key.
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` for a key of more than two primes
 */
function forgePrivateKey (key: PrivateKey): forge.pki.rsa.PrivateKey {
  let forgeKey = forgePrivateKeys.get(key)
  if (forgeKey === undefined) {
    const { n, e, d, p, q, dp, dq, qi }: RsaNumbers = key.numbers
    const modulus = bigInteger(n)
    const first = bigInteger(p)
    const second = bigInteger(q)
    // forge's CRT takes two primes, and the JWK export that gives us the numbers drops a
    // multi-prime key's others: with such a key (OpenSSL makes them) forge decrypts to garbage,
    // which implicit rejection would pass off as a message. Refused instead.
    if (!first.multiply(second).equals(modulus)) {
      throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'the private key\'s modulus is not the product of its primes p and q (a multi-prime rsa key, or a damaged one), and the forge engine takes two-prime keys only; use engine: \'openssl\', or a two-prime key')
    }
    forgeKey = forge.pki.setRsaPrivateKey(modulus, bigInteger(e), bigInteger(d), first,
      second, bigInteger(dp), bigInteger(dq), bigInteger(qi))
    forgePrivateKeys.set(key, forgeKey)
  }
  return forgeKey
}

/** node-forge: pure JavaScript, about 37 private and 750 public 2048-bit operations a second here. */
export const forgeEngine: RsaEngine = {
  name: 'forge',
  encryptBlock (key, plaintext) {
    const binary = toBuffer(plaintext).toString('latin1')
    return Buffer.from(forgePublicKey(key).encrypt(binary, 'RSAES-PKCS1-V1_5'), 'latin1')
  },
  decryptRaw (key, ciphertext) {
    return Buffer.from(forgePrivateKey(key).decrypt(ciphertext.toString('latin1'), 'RAW'), 'latin1')
  }
}

/**
 * An engine's own failure, as this side's error: never the peer's fault, whatever the
 * operation was for. OpenSSL's usual cause is a runtime whose `node:crypto` lacks raw RSA
 * (`RSA_NO_PADDING`), hence the hint.
 * @param operation - what was being done, for the message: `'encrypt'` or `'decrypt'`
 */
export function engineFailure (engine: RsaEngine, operation: 'encrypt' | 'decrypt', cause: unknown): P2snError {
  if (cause instanceof P2snError) return cause
  const reason = cause instanceof Error ? cause.message : String(cause)
  const hint = engine !== opensslEngine
    ? `check the ${String(engine.name)} engine`
    : operation === 'decrypt'
      ? 'this runtime\'s crypto lacks raw rsa; use engine: \'forge\''
      : 'this runtime\'s crypto cannot rsa-encrypt; use engine: \'forge\''
  return new P2snError('ERR_P2SN_ENGINE', `the ${String(engine.name)} rsa engine could not ${operation} (${reason}); ${hint}`, { cause })
}

/**
 * The engine for a name, or the engine itself.
 * @param engine - `'openssl'` (default), `'forge'`, or an engine object of your own
 */
export function resolveEngine (engine: EngineName | RsaEngine | undefined): RsaEngine {
  if (engine === undefined || engine === 'openssl') return opensslEngine
  if (engine === 'forge') return forgeEngine
  if (typeof engine === 'object' && engine !== null && typeof engine.encryptBlock === 'function' && typeof engine.decryptRaw === 'function') return engine
  throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `unknown rsa engine ${String(engine)}; use 'openssl' or 'forge'`)
}
