/**
 * Ciphertexts of each class a padding oracle tells apart: raw RSA with the receiver's public
 * key over encoded messages that are valid, or broken in one way each. What `p2sn scan` sends
 * to look for an oracle, and what our own no-oracle tests send: one list, so that they cannot
 * drift apart. Public-key work only; no private key is needed or touched.
 * @module
 */
import crypto, { type KeyObject } from 'node:crypto'

/**
 * The classes, as Bleichenbacher-style attacks distinguish them: a valid block, then one broken
 * at the first byte, the block type, the separator, the padding's length, a zero inside the
 * padding, and random bytes with no structure at all.
 */
export const CIPHERTEXT_CLASSES = [
  'valid', 'wrong first byte', 'wrong block type', 'no separator', 'short padding', 'zero byte in padding', 'no structure'
] as const

/** One of {@link CIPHERTEXT_CLASSES}. */
export type CiphertextClass = (typeof CIPHERTEXT_CLASSES)[number]

/** Nonzero random bytes, as PKCS#1 v1.5 padding wants them. */
function nonzero (length: number): Buffer {
  const bytes = crypto.randomBytes(length)
  for (let i = 0; i < length; i++) if (bytes[i] === 0) bytes[i] = 1 + (i % 255)
  return bytes
}

/** Raw RSA with a public key (no padding): a block of any content, well padded or not. */
export function rawEncrypt (publicKey: KeyObject, em: Buffer): Buffer {
  return crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_NO_PADDING }, em)
}

/**
 * The encoded message (k bytes) of class `cls` carrying `message`: `00 02 PS 00 M`, PS at least
 * eight nonzero bytes, when valid. `message` must leave room for 11 bytes of padding.
 */
export function encodedMessageOf (cls: CiphertextClass, k: number, message: Buffer): Buffer {
  if (message.length > k - 11) throw new RangeError(`a ${message.length}-byte message leaves no room for padding in a ${k}-byte block`)
  const em = Buffer.concat([Buffer.from([0, 2]), nonzero(k - 3 - message.length), Buffer.from([0]), message])
  switch (cls) {
    case 'valid': break
    case 'wrong first byte': em[0] = 1; break
    case 'wrong block type': em[1] = 1; break
    // The separator's place holds a nonzero byte, and so does every byte after the padding.
    case 'no separator': return Buffer.concat([Buffer.from([0, 2]), nonzero(k - 2)])
    // A separator after five bytes of padding, where at least eight are required.
    case 'short padding': return Buffer.concat([Buffer.from([0, 2]), nonzero(5), Buffer.from([0]), nonzero(k - 8)])
    case 'zero byte in padding': em[5] = 0; break
    case 'no structure': {
      const random = Buffer.concat([Buffer.from([0]), crypto.randomBytes(k - 1)])
      // Never block type 2: random bytes otherwise pass for valid padding about once in 400.
      if (random[1] === 2) random[1] = 0x5a
      return random
    }
  }
  return em
}

/** A ciphertext of class `cls` carrying `message`, to the holder of `publicKey`. */
export function ciphertextOf (cls: CiphertextClass, publicKey: KeyObject, message: Buffer): Buffer {
  const k = Math.ceil((publicKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8)
  return rawEncrypt(publicKey, encodedMessageOf(cls, k, message))
}
