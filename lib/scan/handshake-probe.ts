/**
 * The six handshake steps played by hand as a client, each step's outcome kept as evidence, with
 * keys of any size (a scanner must read a 512-bit server key to report it, and offer one to see
 * whether it is taken). Written straight down the protocol's table; the library's own handshake
 * is not used, since it refuses what the scanner has to look at.
 * @module
 */
import crypto, { type KeyObject } from 'node:crypto'
import { decodeBase64, encodeBase64 } from '../core/base64.js'
import { fingerprintOf, type KeyPair } from '../keys.js'
import { KEYWORD_ERRORKEY, KEYWORD_KEYCHECK, KEYWORD_PUBKEY, KEYWORD_UNEXPECTEDERROR, PKCS1_OVERHEAD } from '../protocol.js'
import { MAX_PROBE_FRAME_LENGTH, type ProbeConnection, type ProbeEvent } from './probe-connection.js'

/** A public key as the server sent it: read with no size rule, so that a weak one can be reported. */
export interface ServerKey {
  key: KeyObject
  bits: number
  exponent: bigint
  fingerprint: string
  /** How it came at step 2: Base64 of the PEM, as the standard says, or raw PEM, as the reference sends it. */
  encoding: 'base64' | 'pem'
  /** The PEM's label: `RSA PUBLIC KEY` (PKCS#1) as the standard has it, else what was sent instead. */
  label: string
}

/** The PEM label the standard sends at step 2. */
export const PKCS1_PUBLIC_LABEL = 'RSA PUBLIC KEY'

/** A client key of any size, with what the probe needs of it. */
export interface ProbeKey {
  bits: number
  /** PKCS#1 PEM of the public key, as step 5 sends it. */
  publicPem: string
  publicKey: KeyObject
  /**
   * The plaintext of the first `maxBlocks` blocks of a ciphertext to this key and the number of
   * blocks it has, or undefined when its length is no number of blocks or a padding is bad.
   */
  open: (ciphertext: Buffer, maxBlocks: number) => Opened | undefined
}

/** A ciphertext opened: the plaintext of the blocks read, and how many blocks the whole has. */
export interface Opened {
  plaintext: Buffer
  blocks: number
}

/** The outcome of one step: passed, or failed with what the server did instead. */
export type StepOutcome = { ok: true } | { ok: false, evidence: string, event?: ProbeEvent }

/** What a handshake probe saw, step by step; steps not reached are left out. */
export interface HandshakeTrace {
  /** Step 2: the server's key. */
  serverKey?: ServerKey
  step2?: StepOutcome
  step4?: StepOutcome
  step6?: StepOutcome
  /** True once step 6 checked out: the connection may carry messages. */
  done: boolean
}

const PEM_START = '-----BEGIN'

/** A key pair of the library as a {@link ProbeKey}. */
export function probeKeyOf (keyPair: KeyPair): ProbeKey {
  return probeKey(keyPair.privateKey.keyObject, keyPair.publicKey.bits)
}

/** A fresh key of `bits` bits (as small as 512), made by OpenSSL with exponent 65537. */
export async function makeProbeKey (bits: number): Promise<ProbeKey> {
  const privateKey = await new Promise<KeyObject>((resolve, reject) => {
    crypto.generateKeyPair('rsa', { modulusLength: bits, publicExponent: 0x10001 }, (err, _, key) => {
      if (err !== null) reject(err)
      else resolve(key)
    })
  })
  return probeKey(privateKey, bits)
}

function probeKey (privateKey: KeyObject, bits: number): ProbeKey {
  const publicKey = crypto.createPublicKey(privateKey)
  return {
    bits,
    publicKey,
    publicPem: publicKey.export({ type: 'pkcs1', format: 'pem' }) as string,
    open: (ciphertext, maxBlocks) => openBlocks(privateKey, Math.ceil(bits / 8), ciphertext, maxBlocks)
  }
}

/**
 * Decrypts each k-byte block with raw RSA and takes its PKCS#1 v1.5 padding off. Not in
 * constant time: the key is the scanner's own, made for one scan, and a server learns nothing
 * from how fast the scanner reads its replies.
 */
function openBlocks (privateKey: KeyObject, k: number, ciphertext: Buffer, maxBlocks: number): Opened | undefined {
  if (ciphertext.length === 0 || ciphertext.length % k !== 0) return undefined
  const parts: Buffer[] = []
  // Only the blocks asked for: a hostile server's frame of thousands would hold the loop for seconds.
  const end = Math.min(ciphertext.length, maxBlocks * k)
  for (let at = 0; at < end; at += k) {
    let em: Buffer
    try {
      em = crypto.privateDecrypt({ key: privateKey, padding: crypto.constants.RSA_NO_PADDING }, ciphertext.subarray(at, at + k))
    } catch {
      return undefined
    }
    const separator = em.indexOf(0, 2)
    if (em[0] !== 0 || em[1] !== 2 || separator < 10) return undefined
    parts.push(em.subarray(separator + 1))
  }
  return { plaintext: Buffer.concat(parts), blocks: ciphertext.length / k }
}

/**
 * RSAES-PKCS1-v1_5 to `key`, in as many blocks as `plaintext` needs (one when it fits, as the
 * standard has it; more is p2sn's extension).
 */
export function sealTo (key: KeyObject, plaintext: Buffer): Buffer {
  const room = Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 0) / 8) - PKCS1_OVERHEAD
  if (room < 1) throw new RangeError('the key is too small to carry a message with pkcs#1 v1.5 padding')
  const blocks: Buffer[] = []
  for (let at = 0; at === 0 || at < plaintext.length; at += room) {
    blocks.push(crypto.publicEncrypt({ key, padding: crypto.constants.RSA_PKCS1_PADDING }, plaintext.subarray(at, at + room)))
  }
  return Buffer.concat(blocks)
}

/** A frame of a sealed message: Base64 of {@link sealTo}. */
export function messageFrame (key: KeyObject, plaintext: Buffer | string): Buffer {
  return encodeBase64(sealTo(key, Buffer.from(plaintext)))
}

/** Reads a step 2 frame: raw PEM or Base64 of PEM, RSA of any size, under any label. Undefined when it is neither. */
export function readServerKey (frame: Buffer): ServerKey | undefined {
  let encoding: ServerKey['encoding'] = 'pem'
  let pem: Buffer = frame
  if (!frame.subarray(0, PEM_START.length).equals(Buffer.from(PEM_START))) {
    encoding = 'base64'
    try {
      pem = decodeBase64(frame)
    } catch {
      return undefined
    }
  }
  let key: KeyObject
  try {
    key = crypto.createPublicKey({ key: pem, format: 'pem' })
  } catch {
    return undefined
  }
  const details = key.asymmetricKeyDetails
  if (key.asymmetricKeyType !== 'rsa' || details?.modulusLength === undefined || details.publicExponent === undefined) return undefined
  const der = key.export({ type: 'pkcs1', format: 'der' })
  const label = /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(pem.toString('latin1'))?.[1] ?? 'unknown'
  return { key, bits: details.modulusLength, exponent: details.publicExponent, fingerprint: fingerprintOf(der), encoding, label }
}

/** One line on what the server did instead of what a step expected. */
export function describeEvent (event: ProbeEvent): string {
  switch (event.kind) {
    case 'silence': return `nothing within ${Math.round(event.ms)} ms`
    case 'closed': return event.reset ? 'the server reset the connection' : 'the server closed the connection'
    case 'overlong': return `a frame over ${MAX_PROBE_FRAME_LENGTH / 1024} KiB`
    case 'frame': return describeFrame(event.frame)
  }
}

/** A frame in words: a keyword by name, else its length and its start when it is text. */
export function describeFrame (frame: Buffer): string {
  const text = frame.toString('latin1')
  if (text === KEYWORD_ERRORKEY || text === KEYWORD_PUBKEY || text === KEYWORD_UNEXPECTEDERROR) return text
  const printable = /^[\x20-\x7e\r\n]*$/.test(text)
  const head = printable ? ` starting ${JSON.stringify(text.slice(0, 24))}` : ''
  return `${frame.length} bytes${head}`
}

/** True when `event` is a frame holding `keyword` exactly. */
export function isKeyword (event: ProbeEvent, keyword: string): boolean {
  return event.kind === 'frame' && event.frame.toString('latin1') === keyword
}

/** Options of {@link runHandshake}. */
export interface HandshakeProbeOptions {
  /** Encrypt the step 3 key check to this key instead of the server's: a check the server must refuse. */
  keyCheckTo?: KeyObject
  /** Stop after step 4's answer (the key check's verdict), sending no key of ours. */
  stopAfterKeyCheck?: boolean
}

/**
 * Plays the client's side of the handshake over `connection` with `client`'s key, and says how
 * far the server followed the protocol. Never throws for what the server does.
 */
export async function runHandshake (connection: ProbeConnection, client: ProbeKey, options: HandshakeProbeOptions = {}): Promise<HandshakeTrace> {
  const trace: HandshakeTrace = { done: false }
  connection.send(KEYWORD_PUBKEY)
  const step2 = await connection.next()
  if (step2.kind !== 'frame') {
    trace.step2 = { ok: false, evidence: describeEvent(step2), event: step2 }
    return trace
  }
  const serverKey = readServerKey(step2.frame)
  if (serverKey === undefined) {
    trace.step2 = { ok: false, evidence: `${describeFrame(step2.frame)}, which is no rsa public key in pem or base64 of pem`, event: step2 }
    return trace
  }
  trace.serverKey = serverKey
  trace.step2 = { ok: true }

  let keyCheck: Buffer
  try {
    keyCheck = messageFrame(options.keyCheckTo ?? serverKey.key, KEYWORD_KEYCHECK)
  } catch (err) {
    // A key OpenSSL cannot encrypt to (too small, over 16384 bits): no step 3 can be made.
    trace.step4 = { ok: false, evidence: `nothing: no key check can be encrypted to that key (${(err as Error).message})` }
    return trace
  }
  connection.send(keyCheck)
  const step4 = await connection.next()
  trace.step4 = isKeyword(step4, KEYWORD_PUBKEY) ? { ok: true } : { ok: false, evidence: describeEvent(step4), event: step4 }
  if (!trace.step4.ok || options.stopAfterKeyCheck === true) return trace

  connection.send(encodeBase64(Buffer.from(client.publicPem, 'latin1')))
  const step6 = await connection.next()
  trace.step6 = checkKeyCheck(step6, client)
  trace.done = trace.step6.ok
  return trace
}

function checkKeyCheck (event: ProbeEvent, client: ProbeKey): StepOutcome {
  if (event.kind !== 'frame' || isKeyword(event, KEYWORD_ERRORKEY)) return { ok: false, evidence: describeEvent(event), event }
  const opened = openFrame(event.frame, client, 1)
  if (opened === undefined) return { ok: false, evidence: `${describeFrame(event.frame)} that do not decrypt with our key`, event }
  if (opened.blocks !== 1) return { ok: false, evidence: `a key check of ${opened.blocks} blocks, where the standard has one`, event }
  if (opened.plaintext.toString('latin1') !== KEYWORD_KEYCHECK) return { ok: false, evidence: `a ciphertext of ${opened.plaintext.length} bytes that are not P2SN:KEYCHECK`, event }
  return { ok: true }
}

/** The plaintext of (the first `maxBlocks` blocks of) a Base64 message frame to `client`, or undefined when it is not one. */
export function openFrame (frame: Buffer, client: ProbeKey, maxBlocks: number): Opened | undefined {
  let ciphertext: Buffer
  try {
    ciphertext = decodeBase64(frame)
  } catch {
    return undefined
  }
  return client.open(ciphertext, maxBlocks)
}
