/**
 * Ciphertexts of each class a padding oracle tells apart, for the no-oracle tests and
 * `npm run timing`: the scanner's own classes (`lib/scan/ciphertext-classes.ts`), so that what
 * `p2sn scan` sends and what our tests send cannot drift apart, taken here with a key pair.
 * Also the raw-RSA builders of hand-made blocks, and of many-block ciphertexts, that the other
 * tests use.
 * @module
 */
import type { KeyPair } from '../../lib/index.js'
import { ciphertextOf as craft, rawEncrypt as rawEncryptTo, type CiphertextClass } from '../../lib/scan/ciphertext-classes.js'

export { CIPHERTEXT_CLASSES, type CiphertextClass } from '../../lib/scan/ciphertext-classes.js'

/** Raw RSA with the public key (no padding): lets a test build any block, well padded or not. */
export function rawEncrypt (keys: KeyPair, em: Buffer): Buffer {
  return rawEncryptTo(keys.publicKey.keyObject, em)
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

/** A ciphertext of class `cls` to `keys`, carrying `message`. */
export function ciphertextOf (cls: CiphertextClass, keys: KeyPair, message: Buffer): Buffer {
  return craft(cls, keys.publicKey.keyObject, message)
}

/** `block` `count` times over: a ciphertext of that many blocks without as many encryptions. */
export function blocks (block: Buffer, count: number): Buffer {
  return Buffer.concat(Array.from({ length: count }, () => block))
}
