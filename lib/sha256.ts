/**
 * HMAC-SHA256 for many short messages under one key, in plain JavaScript.
 *
 * Implicit rejection computes 17 HMACs per 2048-bit block, 16 of them over 10–11 bytes. Through
 * `node:crypto` each costs about 2 µs of call overhead; here a key's inner and outer states are
 * hashed once, and a short message's HMAC is then two compressions (about 0.5 µs). Checked
 * against `node:crypto` in the tests.
 * @module
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
])

const INITIAL_STATE = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
])

const BLOCK = 64

/** Sets byte `at` of the big-endian words `w`, which must be zero there. */
function putByte (w: Int32Array, at: number, byte: number): void {
  w[at >> 2]! |= byte << (24 - 8 * (at & 3))
}

function bigSigma0 (x: number): number {
  return ((x >>> 2) | (x << 30)) ^ ((x >>> 13) | (x << 19)) ^ ((x >>> 22) | (x << 10))
}

function bigSigma1 (x: number): number {
  return ((x >>> 6) | (x << 26)) ^ ((x >>> 11) | (x << 21)) ^ ((x >>> 25) | (x << 7))
}

/**
 * One SHA-256 compression: `state` absorbs the 16 big-endian words in `w[0..15]` (w is scratch
 * of 64 words). The rounds are unrolled by eight with the working variables renamed in place
 * of the usual shuffle: about 17% faster here.
 */
function compress (state: Int32Array, w: Int32Array): void {
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15]!
    const y = w[i - 2]!
    const sigma0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
    const sigma1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)
    w[i] = (w[i - 16]! + sigma0 + w[i - 7]! + sigma1) | 0
  }
  let a = state[0]!
  let b = state[1]!
  let c = state[2]!
  let d = state[3]!
  let e = state[4]!
  let f = state[5]!
  let g = state[6]!
  let h = state[7]!
  // Each line is one round: t = T1; the register that would become "e" gets d + T1, and the
  // one that would become "a" gets T1 + T2 (Ch and Maj in their cheaper equivalent forms).
  for (let i = 0; i < 64; i += 8) {
    let t = (h + bigSigma1(e) + (g ^ (e & (f ^ g))) + K[i]! + w[i]!) | 0
    d = (d + t) | 0; h = (t + bigSigma0(a) + ((a & b) | (c & (a | b)))) | 0
    t = (g + bigSigma1(d) + (f ^ (d & (e ^ f))) + K[i + 1]! + w[i + 1]!) | 0
    c = (c + t) | 0; g = (t + bigSigma0(h) + ((h & a) | (b & (h | a)))) | 0
    t = (f + bigSigma1(c) + (e ^ (c & (d ^ e))) + K[i + 2]! + w[i + 2]!) | 0
    b = (b + t) | 0; f = (t + bigSigma0(g) + ((g & h) | (a & (g | h)))) | 0
    t = (e + bigSigma1(b) + (d ^ (b & (c ^ d))) + K[i + 3]! + w[i + 3]!) | 0
    a = (a + t) | 0; e = (t + bigSigma0(f) + ((f & g) | (h & (f | g)))) | 0
    t = (d + bigSigma1(a) + (c ^ (a & (b ^ c))) + K[i + 4]! + w[i + 4]!) | 0
    h = (h + t) | 0; d = (t + bigSigma0(e) + ((e & f) | (g & (e | f)))) | 0
    t = (c + bigSigma1(h) + (b ^ (h & (a ^ b))) + K[i + 5]! + w[i + 5]!) | 0
    g = (g + t) | 0; c = (t + bigSigma0(d) + ((d & e) | (f & (d | e)))) | 0
    t = (b + bigSigma1(g) + (a ^ (g & (h ^ a))) + K[i + 6]! + w[i + 6]!) | 0
    f = (f + t) | 0; b = (t + bigSigma0(c) + ((c & d) | (e & (c | d)))) | 0
    t = (a + bigSigma1(f) + (h ^ (f & (g ^ h))) + K[i + 7]! + w[i + 7]!) | 0
    e = (e + t) | 0; a = (t + bigSigma0(b) + ((b & c) | (d & (b | c)))) | 0
  }
  state[0] = (state[0]! + a) | 0
  state[1] = (state[1]! + b) | 0
  state[2] = (state[2]! + c) | 0
  state[3] = (state[3]! + d) | 0
  state[4] = (state[4]! + e) | 0
  state[5] = (state[5]! + f) | 0
  state[6] = (state[6]! + g) | 0
  state[7] = (state[7]! + h) | 0
}

/**
 * HMAC-SHA256 with a key of at most 64 bytes. The key's inner and outer states are hashed once
 * ({@link Hmac256.setKey}); each {@link Hmac256.digest} then costs one compression per 64 bytes
 * of message plus two, and allocates nothing.
 */
export class Hmac256 {
  readonly #inner = new Int32Array(8)
  readonly #outer = new Int32Array(8)
  readonly #state = new Int32Array(8)
  readonly #w = new Int32Array(64)
  /** The outer hash's one block: the inner digest in words 0-7, then padding for 96 bytes in all, set once. */
  readonly #wOuter = new Int32Array(64)

  /** @param key - the HMAC key, 64 bytes at most (longer keys are hashed first by HMAC, which this does not do) */
  constructor (key: Uint8Array) {
    this.#wOuter[8] = 0x80000000
    this.#wOuter[15] = (BLOCK + 32) * 8
    this.setKey(key)
  }

  /** Switches to another key. */
  setKey (key: Uint8Array): void {
    if (key.length > BLOCK) throw new RangeError('Hmac256 takes keys of at most 64 bytes')
    this.#inner.set(INITIAL_STATE)
    this.#outer.set(INITIAL_STATE)
    this.#padKey(key, 0x36)
    compress(this.#inner, this.#w)
    this.#padKey(key, 0x5c)
    compress(this.#outer, this.#w)
  }

  /** Writes HMAC(key, message) — 32 bytes — into `out` at `offset`. */
  digest (message: Uint8Array, out: Uint8Array, offset = 0): void {
    const w = this.#w
    const state = this.#state
    const length = message.length
    state.set(this.#inner)
    let at = 0
    for (; at + BLOCK <= length; at += BLOCK) {
      for (let i = 0; i < 16; i++) {
        const j = at + 4 * i
        w[i] = (message[j]! << 24) | (message[j + 1]! << 16) | (message[j + 2]! << 8) | message[j + 3]!
      }
      compress(state, w)
    }
    // The tail, 0x80, and the length in bits (after the key's 64-byte block): one or two blocks.
    const tail = length - at
    w.fill(0, 0, 16)
    for (let i = 0; i < tail; i++) putByte(w, i, message[at + i]!)
    putByte(w, tail, 0x80)
    if (tail >= BLOCK - 8) {
      compress(state, w)
      w.fill(0, 0, 16)
    }
    w[15] = (BLOCK + length) * 8
    compress(state, w)
    this.#finish(out, offset)
  }

  /**
   * The counter-mode PRF of implicit rejection: writes HMAC(key, uint16be(i) ‖ label ‖
   * uint16be(bits)) for i = 0 … blocks − 1 into `out`, 32 bytes each. The message block is
   * built once and only its counter changes: each output block is then just its two
   * compressions.
   *
   * @param label - at most 51 bytes
   */
  counterMode (label: Uint8Array, bits: number, blocks: number, out: Uint8Array): void {
    const length = 2 + label.length + 2
    if (length > BLOCK - 9) throw new RangeError('Hmac256.counterMode takes labels of at most 51 bytes')
    const w = this.#w
    const state = this.#state
    w.fill(0, 0, 16)
    for (let i = 0; i < label.length; i++) putByte(w, 2 + i, label[i]!)
    putByte(w, 2 + label.length, (bits >>> 8) & 0xff)
    putByte(w, 3 + label.length, bits & 0xff)
    putByte(w, length, 0x80)
    w[15] = (BLOCK + length) * 8
    const low = w[0]! & 0xffff
    for (let block = 0; block < blocks; block++) {
      w[0] = (block << 16) | low
      state.set(this.#inner)
      compress(state, w)
      this.#finish(out, block * 32)
    }
  }

  /** The outer hash over the inner digest in #state; writes the 32-byte HMAC at `offset`. */
  #finish (out: Uint8Array, offset: number): void {
    const state = this.#state
    const outer = this.#wOuter
    for (let i = 0; i < 8; i++) outer[i] = state[i]!
    state.set(this.#outer)
    compress(state, outer)
    for (let i = 0; i < 8; i++) {
      const word = state[i]!
      out[offset++] = word >>> 24
      out[offset++] = (word >>> 16) & 0xff
      out[offset++] = (word >>> 8) & 0xff
      out[offset++] = word & 0xff
    }
  }

  #padKey (key: Uint8Array, pad: number): void {
    const w = this.#w
    w.fill(0, 0, 16)
    for (let i = 0; i < BLOCK; i++) w[i >> 2]! |= ((key[i] ?? 0) ^ pad) << (24 - 8 * (i & 3))
  }
}
