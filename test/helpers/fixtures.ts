/**
 * Typed loaders for the files under test/fixtures/: the recorded Python sessions, the Wycheproof
 * RSAES-PKCS1-v1_5 vectors and the implicit-rejection vectors of draft-irtf-cfrg-rsa-guidance.
 * Each loader checks the shape it relies on, so a damaged fixture fails loudly instead of
 * silently running fewer cases.
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs'

const FIXTURES = new URL('../fixtures/', import.meta.url)

/** The text of a file under test/fixtures/, e.g. `'implicit-rejection/k2048.pem'`. */
export function fixtureText (path: string): string {
  return readFileSync(new URL(path, FIXTURES), 'utf8')
}

/** A JSON file under test/fixtures/, parsed. */
export function fixtureJson (path: string): unknown {
  return JSON.parse(fixtureText(path)) as unknown
}

/** Names of the files in a folder under test/fixtures/ that end with `suffix`, sorted. */
function fixtureFiles (folder: string, suffix: string): string[] {
  return readdirSync(new URL(folder.endsWith('/') ? folder : folder + '/', FIXTURES))
    .filter((name) => name.endsWith(suffix))
    .sort()
}

function fail (where: string, what: string): never {
  throw new Error(`fixture ${where}: ${what}`)
}

function record (value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(where, 'expected an object')
  return value as Record<string, unknown>
}

function list (value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) fail(where, 'expected an array')
  return value
}

function text (value: unknown, where: string): string {
  if (typeof value !== 'string') fail(where, 'expected a string')
  return value
}

function integer (value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) fail(where, 'expected an integer')
  return value
}

function hex (value: unknown, where: string): string {
  const s = text(value, where)
  if (!/^(?:[0-9a-f]{2})*$/.test(s)) fail(where, 'expected lowercase hex')
  return s
}

// ---- Recorded sessions (vectors/*.json) -------------------------------------------------------

/** One side of a recorded session: its key pair as Python's `rsa` wrote it. */
interface RecordedPeer {
  bits: number
  privateKeyPem: string
  publicKeyPem: string
}

/** A request and the reply the reference server sent, as hex. */
interface RecordedExchange {
  requestHex: string
  replyHex: string
}

/** Bytes sent as they are (not a protocol message) and the raw answer, for the error scenarios. */
interface RecordedRawExchange {
  sentRawBase64: string
  answerRawHex: string
}

/** One frame on the wire, terminator included. */
interface RecordedFrame {
  from: 'client' | 'server'
  bytes: Buffer
}

/** One recorded session. */
export interface RecordedSession {
  file: string
  name: string
  description: string
  server: RecordedPeer
  client: RecordedPeer
  exchanges: RecordedExchange[]
  rawExchanges: RecordedRawExchange[]
  wire: RecordedFrame[]
}

function peer (value: unknown, where: string): RecordedPeer {
  const r = record(value, where)
  return {
    bits: integer(r.bits, `${where}.bits`),
    privateKeyPem: text(r.privateKeyPem, `${where}.privateKeyPem`),
    publicKeyPem: text(r.publicKeyPem, `${where}.publicKeyPem`)
  }
}

/** Loads `vectors/<file>`. */
function loadSession (file: string): RecordedSession {
  const where = `vectors/${file}`
  const r = record(fixtureJson(where), where)
  const exchanges: RecordedExchange[] = []
  const rawExchanges: RecordedRawExchange[] = []
  list(r.exchanges, `${where}.exchanges`).forEach((item, i) => {
    const e = record(item, `${where}.exchanges[${i}]`)
    if ('requestHex' in e) {
      exchanges.push({ requestHex: hex(e.requestHex, `${where}.exchanges[${i}].requestHex`), replyHex: hex(e.replyHex, `${where}.exchanges[${i}].replyHex`) })
    } else {
      rawExchanges.push({ sentRawBase64: text(e.sentRawBase64, `${where}.exchanges[${i}].sentRawBase64`), answerRawHex: hex(e.answerRawHex, `${where}.exchanges[${i}].answerRawHex`) })
    }
  })
  const wire = list(r.wire, `${where}.wire`).map((item, i): RecordedFrame => {
    const f = record(item, `${where}.wire[${i}]`)
    const from = f.from
    if (from !== 'client' && from !== 'server') fail(`${where}.wire[${i}].from`, 'expected client or server')
    return { from, bytes: Buffer.from(text(f.frameBase64, `${where}.wire[${i}].frameBase64`), 'base64') }
  })
  return {
    file,
    name: text(r.name, `${where}.name`),
    description: text(r.description, `${where}.description`),
    server: peer(r.server, `${where}.server`),
    client: peer(r.client, `${where}.client`),
    exchanges,
    rawExchanges,
    wire
  }
}

/**
 * The names of the six recorded sessions under vectors/, in file-name order: what
 * {@link loadSessions} must find (a test checks it), so that none is skipped unnoticed.
 */
export const RECORDED_SESSION_NAMES: readonly string[] = [
  'echo-2048', 'errorkey-1024', 'hi-1024', 'hi-overflow-1024', 'mixed-2048-1024', 'raise-1024'
]

/** Every recorded session, in file-name order. */
export function loadSessions (): RecordedSession[] {
  return fixtureFiles('vectors', '.json').map(loadSession)
}

// ---- Wycheproof (wycheproof/rsa_pkcs1_*_test.json) --------------------------------------------

/** One Wycheproof decryption test. */
export interface WycheproofTest {
  tcId: number
  comment: string
  msg: string
  ct: string
  result: 'valid' | 'invalid' | 'acceptable'
  flags: string[]
}

/** A Wycheproof group: one private key and its tests. */
export interface WycheproofGroup {
  keySize: number
  /**
   * The key as PKCS#8 PEM, made from `privateKeyPkcs8`. (The files' own `privateKeyPem` holds
   * PKCS#1 DER under a `PRIVATE KEY` label, which no PEM reader accepts.)
   */
  privateKeyPem: string
  /** The private exponent, hex, to look for in places it must never appear. */
  privateExponentHex: string
  tests: WycheproofTest[]
}

/** A Wycheproof file. */
interface WycheproofFile {
  file: string
  numberOfTests: number
  groups: WycheproofGroup[]
}

/** Wraps DER in PEM with 64-character lines. */
export function toPemBlock (label: string, der: Uint8Array): string {
  const body = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`
}

/** Loads `wycheproof/rsa_pkcs1_<bits>_test.json`. */
export function loadWycheproof (bits: number): WycheproofFile {
  const file = `rsa_pkcs1_${bits}_test.json`
  const where = `wycheproof/${file}`
  const r = record(fixtureJson(where), where)
  const groups = list(r.testGroups, `${where}.testGroups`).map((item, g): WycheproofGroup => {
    const gw = `${where}.testGroups[${g}]`
    const group = record(item, gw)
    const privateKey = record(group.privateKey, `${gw}.privateKey`)
    return {
      keySize: integer(group.keySize, `${gw}.keySize`),
      privateKeyPem: toPemBlock('PRIVATE KEY', Buffer.from(hex(group.privateKeyPkcs8, `${gw}.privateKeyPkcs8`), 'hex')),
      privateExponentHex: hex(privateKey.privateExponent, `${gw}.privateKey.privateExponent`),
      tests: list(group.tests, `${gw}.tests`).map((t, i): WycheproofTest => {
        const tw = `${gw}.tests[${i}]`
        const test = record(t, tw)
        const result = test.result
        if (result !== 'valid' && result !== 'invalid' && result !== 'acceptable') fail(`${tw}.result`, 'unknown result')
        return {
          tcId: integer(test.tcId, `${tw}.tcId`),
          comment: text(test.comment, `${tw}.comment`),
          msg: hex(test.msg, `${tw}.msg`),
          ct: hex(test.ct, `${tw}.ct`),
          result,
          flags: list(test.flags, `${tw}.flags`).map((f, j) => text(f, `${tw}.flags[${j}]`))
        }
      })
    }
  })
  return { file, numberOfTests: integer(r.numberOfTests, `${where}.numberOfTests`), groups }
}

// ---- Implicit rejection (implicit-rejection/cases.json) --------------------------------------

/** One case of Appendix B of draft-irtf-cfrg-rsa-guidance. */
interface RejectionCase {
  title: string
  ciphertextHex: string
  expectedHex: string
}

/** A key of Appendix B and its cases. */
interface RejectionFamily {
  id: string
  modulusBits: number
  section: string
  /** The key file's text (PKCS#8 PEM), from `implicit-rejection/<id>.pem`. */
  privateKeyPem: string
  cases: RejectionCase[]
}

/** Loads `implicit-rejection/cases.json` and each family's key. */
export function loadRejectionFamilies (): RejectionFamily[] {
  const where = 'implicit-rejection/cases.json'
  const r = record(fixtureJson(where), where)
  return list(r.families, `${where}.families`).map((item, f): RejectionFamily => {
    const fw = `${where}.families[${f}]`
    const family = record(item, fw)
    const id = text(family.id, `${fw}.id`)
    if (!/^k\d+$/.test(id)) fail(`${fw}.id`, 'expected kNNNN')
    return {
      id,
      modulusBits: integer(family.modulus_bits, `${fw}.modulus_bits`),
      section: text(family.section, `${fw}.section`),
      privateKeyPem: fixtureText(`implicit-rejection/${id}.pem`),
      cases: list(family.cases, `${fw}.cases`).map((c, i): RejectionCase => {
        const cw = `${fw}.cases[${i}]`
        const rc = record(c, cw)
        return {
          title: text(rc.title, `${cw}.title`),
          ciphertextHex: hex(rc.ciphertext_hex, `${cw}.ciphertext_hex`),
          expectedHex: hex(rc.expected_hex, `${cw}.expected_hex`)
        }
      })
    }
  })
}
