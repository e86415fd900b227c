/**
 * RSAES-PKCS1-v1_5 unpadding with implicit rejection (draft-irtf-cfrg-rsa-guidance, as in
 * OpenSSL 3.2+): a block whose padding is bad decrypts to a synthetic message derived from the
 * ciphertext and the private key, so neither an error nor the time taken tells a bad padding
 * from a good one. Every byte is scanned and combined with masks; nothing branches on the
 * decrypted block.
 * @module
 */
import { Hmac256 } from './sha256.js'

const HASH_LENGTH = 32
/** The PRF's output length for the synthetic lengths: 128 candidates of 16 bits. */
const LENGTH_CANDIDATES_BYTES = 256
const LABEL_MESSAGE = Buffer.from('message')
const LABEL_LENGTH = Buffer.from('length')

/** 1 when `x` (a byte) is zero, else 0. */
function isZero (x: number): number {
  return ((x - 1) >>> 31) & 1
}

/** 1 when `a < b`, for non-negative `a` and `b` below 2^31, else 0. */
function lessThan (a: number, b: number): number {
  return ((a - b) >>> 31) & 1
}

/** `a` when `bit` is 1, `b` when it is 0. */
function select (bit: number, a: number, b: number): number {
  const mask = -bit
  return (a & mask) | (b & ~mask)
}

// Scratch reused by every call: decryption is synchronous, so calls never overlap in a thread.
const hmac = new Hmac256(Buffer.alloc(HASH_LENGTH))
const kdk = Buffer.alloc(HASH_LENGTH)
/** The key-derivation HMAC of each private key, its key states hashed once per key. */
const kdkMacs = new WeakMap<Buffer, Hmac256>()
let syntheticScratch = Buffer.alloc(0)
const candidatesScratch = Buffer.alloc(LENGTH_CANDIDATES_BYTES)

/** Writes PRF(label, length) of the draft (HMAC-SHA256 in counter mode under `hmac`'s key) into `out`. */
function prf (label: Buffer, length: number, out: Buffer): void {
  hmac.counterMode(label, (length * 8) & 0xffff, Math.ceil(length / HASH_LENGTH), out)
}

/**
 * Decodes one decrypted block.
 *
 * @param em - the raw RSA output, exactly k bytes (the buffer may be overwritten)
 * @param ciphertext - the k-byte ciphertext it came from
 * @param rejectionKey - SHA-256 of the private exponent as k big-endian bytes
 * @returns the message, and `valid` (1 or 0) for callers that must refuse bad blocks; a caller
 *   that branches on `valid` turns itself into a padding oracle
 */
export function unpadImplicit (em: Buffer, ciphertext: Buffer, rejectionKey: Buffer): { message: Buffer, valid: number } {
  const k = em.length
  let kdkMac = kdkMacs.get(rejectionKey)
  if (kdkMac === undefined) {
    kdkMac = new Hmac256(rejectionKey)
    kdkMacs.set(rejectionKey, kdkMac)
  }
  kdkMac.digest(ciphertext, kdk)
  hmac.setKey(kdk)
  const rounded = Math.ceil(k / HASH_LENGTH) * HASH_LENGTH
  if (syntheticScratch.length < rounded) syntheticScratch = Buffer.alloc(rounded)
  const synthetic = syntheticScratch
  const candidates = candidatesScratch
  prf(LABEL_MESSAGE, k, synthetic)
  prf(LABEL_LENGTH, LENGTH_CANDIDATES_BYTES, candidates)

  // The synthetic length: the last candidate, masked to the bit width of max, that is below max.
  const max = k - 10
  let mask = max
  mask |= mask >>> 1
  mask |= mask >>> 2
  mask |= mask >>> 4
  mask |= mask >>> 8
  let syntheticLength = 0
  for (let i = 0; i < LENGTH_CANDIDATES_BYTES; i += 2) {
    const candidate = ((candidates[i]! << 8) | candidates[i + 1]!) & mask
    syntheticLength = select(lessThan(candidate, max), candidate, syntheticLength)
  }

  // 00 02, then the first zero byte at index 10 or later (at least 8 bytes of padding).
  let good = isZero(em[0]!) & isZero(em[1]! ^ 2)
  let found = 0
  let zeroIndex = 0
  for (let i = 2; i < k; i++) {
    const zero = isZero(em[i]!)
    zeroIndex = select(zero & (found ^ 1), i, zeroIndex)
    found |= zero
  }
  good &= found & (lessThan(zeroIndex, 10) ^ 1)

  const length = select(good, k - zeroIndex - 1, syntheticLength)
  const byteMask = -good & 0xff
  for (let i = 0; i < k; i++) {
    em[i] = (em[i]! & byteMask) | (synthetic[i]! & ~byteMask)
  }
  return { message: em.subarray(k - length), valid: good }
}

/**
 * Whether a decrypted block is exactly the PKCS#1 v1.5 encoding of `expected` (00 02, at least
 * eight nonzero bytes, 00, then `expected`), checked over every byte with masks. A caller that
 * only needs to know whether a block holds one known message (the handshake's key check) learns
 * just what implicit rejection would tell it, since a synthetic message is `expected` by a
 * chance of about 2^-8 per byte, but spends no HMAC on it.
 *
 * @param em - the raw RSA output, exactly k bytes
 */
export function encodes (em: Uint8Array, expected: Uint8Array): boolean {
  const k = em.length
  const separator = k - expected.length - 1
  // A block too short for eight bytes of padding holds no such encoding: a fact of the key size.
  if (separator < 10) return false
  let bad = em[0]! | (em[1]! ^ 2) | em[separator]!
  for (let i = 2; i < separator; i++) bad |= isZero(em[i]!)
  for (let i = 0; i < expected.length; i++) bad |= em[separator + 1 + i]! ^ expected[i]!
  return bad === 0
}
