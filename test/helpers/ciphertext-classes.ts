/**
 * Ciphertexts of each class a padding oracle tells apart: RSA applied by hand to encoded
 * messages that are valid, or broken in one way each. For the no-oracle test and
 * `npm run timing`; and the raw-RSA builders of hand-made blocks, and of many-block ciphertexts,
 * the other tests use.
 * @module
 */
import crypto from 'node:crypto'
import type { KeyPair } from '../../lib/index.js'

/** The classes, as Bleichenbacher-style attacks distinguish them. */
export const CIPHERTEXT_CLASSES = [
  'valid', 'no structure', 'wrong first byte', 'wrong block type', 'no separator', 'short padding', 'zero byte in padding'
] as const

/** One of {@link CIPHERTEXT_CLASSES}. */
export type CiphertextClass = (typeof CIPHERTEXT_CLASSES)[number]

/** Nonzero random bytes, as PKCS#1 v1.5 padding wants them. */
function nonzero (length: number): Buffer {
  const bytes = crypto.randomBytes(length)
  for (let i = 0; i < length; i++) if (bytes[i] === 0) bytes[i] = 1 + (i % 255)
  return bytes
}

/** Raw RSA with the public key (no padding): lets a test build any block, well padded or not. */
export function rawEncrypt (keys: KeyPair, em: Buffer): Buffer {
  return crypto.publicEncrypt({ key: keys.publicKey.keyObject, padding: crypto.constants.RSA_NO_PADDING }, em)
}

/** `00 02 PS 00 M` with a nonzero PS of `psLength` bytes, k bytes in all. */
export function encodedMessage (k: number, psLength: number, message: Buffer): Buffer {
  if (2 + psLength + 1 + message.length !== k) throw new Error(`test setup: an encoded message of ${2 + psLength + 1 + message.length} bytes for a ${k}-byte key`)
  const em = Buffer.alloc(k)
  em[1] = 2
  for (let i = 0; i < psLength; i++) em[2 + i] = 1 + ((i * 37) % 255)
  message.copy(em, 3 + psLength)
  return em
}

/**
 * The encoded message (EM, k bytes) of a class carrying `message`: `00 02 PS 00 M` with PS of
 * at least 8 nonzero bytes when valid.
 */
function encodedMessageOf (cls: CiphertextClass, k: number, message: Buffer): Buffer {
  const em = Buffer.concat([Buffer.from([0, 2]), nonzero(k - 3 - message.length), Buffer.from([0]), message])
  switch (cls) {
    case 'valid': break
    case 'no structure': return Buffer.concat([Buffer.from([0]), crypto.randomBytes(k - 1)])
    case 'wrong first byte': em[0] = 1; break
    case 'wrong block type': em[1] = 1; break
    case 'no separator': em[k - message.length - 1] = 0x5a; break
    case 'short padding': {
      const short = Buffer.concat([Buffer.from([0, 2]), nonzero(5), Buffer.from([0]), nonzero(k - 8)])
      return short
    }
    case 'zero byte in padding': em[5] = 0; break
  }
  return em
}

/** A ciphertext of class `cls` to `keys`: raw RSA (no padding) over {@link encodedMessageOf}. */
export function ciphertextOf (cls: CiphertextClass, keys: KeyPair, message: Buffer): Buffer {
  return rawEncrypt(keys, encodedMessageOf(cls, keys.publicKey.size, message))
}

/** `block` `count` times over: a ciphertext of that many blocks without as many encryptions. */
export function blocks (block: Buffer, count: number): Buffer {
  return Buffer.concat(Array.from({ length: count }, () => block))
}
