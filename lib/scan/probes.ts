/**
 * The probes of `p2sn scan`, one function per item of the report, each bounded in time and in
 * bytes sent. Our own hostile tests run the same functions against our server, so that what the
 * scanner calls safe and what the tests prove cannot drift apart.
 * @module
 */
import crypto from 'node:crypto'
import { KEYWORD_ERRORKEY, KEYWORD_UNEXPECTEDERROR, PKCS1_OVERHEAD } from '../protocol.js'
import { encodeBase64 } from '../core/base64.js'
import { CIPHERTEXT_CLASSES, ciphertextOf, type CiphertextClass } from './ciphertext-classes.js'
import {
  PKCS1_PUBLIC_LABEL, describeEvent, isKeyword, messageFrame, openFrame, runHandshake,
  type HandshakeTrace, type ProbeKey, type ServerKey
} from './handshake-probe.js'
import { ProbeConnection, type ProbeEvent, type ProbeTally, type ProbeTarget } from './probe-connection.js'
import { formatBytes, type ScanItem, type ScanSection, type Verdict } from './report.js'
import { fingerprintOf, toPublicKey, type KeyPair } from '../keys.js'

/** What every probe of one scan shares. */
export interface ProbeContext {
  target: ProbeTarget
  tally: ProbeTally
  /** The scanner's own key (2048 bits unless given), for the handshakes that should succeed. */
  client: ProbeKey
  /** Every server key seen, by fingerprint: the identity items judge them at the end. */
  keysSeen: Map<string, ServerKey>
  /** In the authenticated mode: connections whose key proven in TLS was not the key of step 2. */
  tlsMismatches: string[]
  /** Handshakes whose key was compared with TLS's. */
  tlsCompared: number
  /** When the scan must end (performance.now()): probes not begun by then are not run. */
  deadline: number
}

/** A context for the probes of one scan, against `target` as `client`, ending `totalTimeout` ms from now. */
export function probeContext (target: ProbeTarget, client: ProbeKey, totalTimeout = Infinity): ProbeContext {
  return { target, tally: { connections: 0, bytesSent: 0 }, client, keysSeen: new Map(), tlsMismatches: [], tlsCompared: 0, deadline: performance.now() + totalTimeout }
}

/** A probe not begun because the scan's time ran out. */
export class ScanTimeUp extends Error {}

/** Throws {@link ScanTimeUp} once the scan's deadline has passed. */
function checkDeadline (context: ProbeContext): void {
  if (performance.now() > context.deadline) throw new ScanTimeUp('the scan\'s time (totalTimeout) ran out before it')
}

/** Keeps what a handshake showed: the server's key, and in the authenticated mode whether TLS proved that key. */
function note (context: ProbeContext, connection: ProbeConnection, trace: HandshakeTrace): void {
  const key = trace.serverKey
  if (key === undefined) return
  context.keysSeen.set(key.fingerprint, key)
  if (connection.tls === undefined) return
  context.tlsCompared++
  const proven = connection.tls.peerKey.export({ type: 'pkcs1', format: 'der' })
  if (!key.key.export({ type: 'pkcs1', format: 'der' }).equals(proven)) context.tlsMismatches.push(`tls proved ${fingerprintOf(proven)} but step 2 sent ${key.fingerprint}`)
}

/** A connection through the handshake with `client`'s key (and, in the authenticated mode, its TLS key). */
export interface Session {
  connection: ProbeConnection
  trace: HandshakeTrace
}

/** An item of `section`. */
export function item (section: ScanSection, id: string, title: string, verdict: Verdict, evidence: string): ScanItem {
  return { id, section, title, verdict, evidence }
}

/** Opens a connection and plays the handshake as `client` (default: the scanner's key); records the server's key. */
export async function openSession (context: ProbeContext, client: ProbeKey = context.client, authKeys?: KeyPair): Promise<Session> {
  checkDeadline(context)
  const target = authKeys === undefined ? context.target : { ...context.target, authKeys }
  const connection = await ProbeConnection.open(target, context.tally)
  const trace = await runHandshake(connection, client)
  note(context, connection, trace)
  return { connection, trace }
}

/** Why an item could not be checked: the step of the handshake that failed first. */
function blocked (trace: HandshakeTrace): string {
  if (trace.step2?.ok !== true) return 'needs step 2 (the server\'s key), which failed'
  if (trace.step4?.ok !== true) return 'needs step 4 (P2SN:PUBKEY), which failed'
  return 'needs step 6 (the server\'s key check), which failed'
}

// ---------------------------------------------------------------------------------------------
// Conformance

/** What {@link probeConformance} leaves for later probes: the first handshake, and whether a request got a reply. */
export interface Conformance {
  items: ScanItem[]
  session: Session
  answered: boolean
}

/** The handshake's steps 2, 4 and 6, then one request and its reply. */
export async function probeConformance (context: ProbeContext): Promise<Conformance> {
  const section = 'conformance'
  const session = await openSession(context)
  const { trace, connection } = session
  const items: ScanItem[] = []
  const key = trace.serverKey
  items.push(step2Item(trace))
  items.push(stepItem(trace, 'step4', 'conformance.step4', 'step 4: P2SN:PUBKEY', 'P2SN:PUBKEY after our key check'))
  items.push(stepItem(trace, 'step6', 'conformance.keycheck', 'step 6: the key check decrypts', 'P2SN:KEYCHECK, encrypted to our key'))
  if (!trace.done || key === undefined) {
    items.push(item(section, 'conformance.request', 'a request answered', 'n/a', blocked(trace)))
    connection.destroy()
    return { items, session, answered: false }
  }
  const request = 'p2sn scan: a request'
  await letQuiet(connection)
  connection.send(messageFrame(key.key, request))
  const answer = classifyAnswer(await connection.next(), context.client)
  // Done with it: kept open, a hostile server could fill the scanner's memory through it.
  connection.destroy()
  const verdict: Verdict = answer.outcome === 'reply' || answer.outcome === 'P2SN:UNEXPECTEDERROR' ? 'pass' : 'fail'
  const evidence = answer.outcome === 'reply'
    ? `${answer.evidence} that decrypts with our key`
    : answer.outcome === 'P2SN:UNEXPECTEDERROR'
      ? 'P2SN:UNEXPECTEDERROR, encrypted to our key: the handler failed, and said so as the standard has it'
      : `expected a reply, got ${answer.evidence} (the standard: a server answers every message)`
  items.push(item(section, 'conformance.request', 'a request answered', verdict, evidence))
  return { items, session, answered: verdict === 'pass' }
}

function step2Item (trace: HandshakeTrace): ScanItem {
  const id = 'conformance.step2'
  const title = 'step 2: the server\'s key'
  const key = trace.serverKey
  if (trace.step2?.ok !== true || key === undefined) return item('conformance', id, title, 'fail', `expected a public key, got ${trace.step2?.ok === false ? trace.step2.evidence : 'nothing'}`)
  if (key.label !== PKCS1_PUBLIC_LABEL) {
    return item('conformance', id, title, 'fail', `a pem labelled ${key.label}, not the pkcs#1 ${PKCS1_PUBLIC_LABEL} the standard sends (the python client reads no other)`)
  }
  return key.encoding === 'base64'
    ? item('conformance', id, title, 'pass', 'base64 of its pem, as the standard says')
    : item('conformance', id, title, 'warn', 'raw pem, not base64 of it: the python reference\'s quirk (clients must take both)')
}

function stepItem (trace: HandshakeTrace, step: 'step4' | 'step6', id: string, title: string, expected: string): ScanItem {
  const outcome = trace[step]
  if (outcome === undefined) return item('conformance', id, title, 'n/a', blocked(trace))
  return outcome.ok
    ? item('conformance', id, title, 'pass', expected)
    : item('conformance', id, title, 'fail', `expected ${expected}, got ${outcome.evidence}`)
}

/** Step 3 with a key check encrypted to another key than the server's: the server must answer P2SN:ERRORKEY. */
export async function probeErrorKey (context: ProbeContext): Promise<ScanItem> {
  const id = 'conformance.errorkey'
  const title = 'P2SN:ERRORKEY for a bad key check'
  checkDeadline(context)
  const connection = await ProbeConnection.open(context.target, context.tally)
  try {
    const trace = await runHandshake(connection, context.client, { keyCheckTo: context.client.publicKey, stopAfterKeyCheck: true })
    note(context, connection, trace)
    const step4 = trace.step4
    if (step4 === undefined) return item('conformance', id, title, 'n/a', blocked(trace))
    if (step4.ok) return item('conformance', id, title, 'fail', 'it went on with P2SN:PUBKEY: it took a key check made to another key')
    const event = step4.event
    if (event !== undefined && isKeyword(event, KEYWORD_ERRORKEY)) return item('conformance', id, title, 'pass', 'P2SN:ERRORKEY for a key check made to another key')
    if (event?.kind === 'closed') return item('conformance', id, title, 'warn', `${describeEvent(event)} without P2SN:ERRORKEY, which the standard sends`)
    return item('conformance', id, title, 'fail', `expected P2SN:ERRORKEY, got ${step4.evidence}`)
  } finally {
    connection.destroy()
  }
}

// ---------------------------------------------------------------------------------------------
// Padding oracle

/** What the server did with one message, in the terms a padding oracle is judged by. */
export interface Answer {
  /**
   * What came, in order, within the watch: `reply`, `P2SN:ERRORKEY`, `P2SN:UNEXPECTEDERROR`,
   * `other frame`, `close`, `reset`, joined by ", then "; or `silence`.
   */
  outcome: string
  /** Milliseconds from the message to the first answer (to the deadline for silence). */
  ms: number
  /** The first block's plaintext of the first reply, in hex: tells a constant error reply apart. */
  reply?: string
  /** The first answer in words, for evidence. */
  evidence: string
}

/** What a reply is, by its first block alone: a server's frame may hold thousands of blocks, and one tells what it is. */
function classify (event: ProbeEvent, client: ProbeKey): { label: string, evidence: string, reply?: string } {
  const evidence = describeEvent(event)
  if (event.kind === 'silence') return { label: 'silence', evidence }
  if (event.kind === 'closed') return { label: event.reset ? 'reset' : 'close', evidence }
  if (event.kind === 'overlong') return { label: 'other frame', evidence }
  if (isKeyword(event, KEYWORD_ERRORKEY)) return { label: KEYWORD_ERRORKEY, evidence }
  const opened = openFrame(event.frame, client, 1)
  if (opened === undefined) return { label: 'other frame', evidence: `${evidence} that are no message to our key` }
  const { plaintext, blocks } = opened
  if (blocks === 1 && plaintext.toString('latin1') === KEYWORD_UNEXPECTEDERROR) return { label: KEYWORD_UNEXPECTEDERROR, evidence: 'P2SN:UNEXPECTEDERROR' }
  const size = blocks === 1 ? `${plaintext.length} bytes` : `${blocks} blocks`
  return { label: 'reply', evidence: `a reply of ${size}`, reply: plaintext.toString('hex') }
}

/** Sorts the event after a message into the outcomes an oracle could tell apart. */
export function classifyAnswer (event: ProbeEvent, client: ProbeKey): Answer {
  const { label, evidence, reply } = classify(event, client)
  return { outcome: label, ms: event.ms, evidence, reply }
}

/** How long a connection must be quiet before a probe's message goes out. */
const QUIET_MS = 50

/**
 * Drops what the server says unasked after the handshake (a greeting), until it has been quiet
 * {@link QUIET_MS}: no answer to the probe's message, which is not yet sent.
 */
async function letQuiet (connection: ProbeConnection): Promise<void> {
  connection.takeQueued()
  for (let i = 0; i < MAX_ANSWER_EVENTS; i++) {
    const event = await connection.next(QUIET_MS)
    if (event.kind !== 'frame') return
  }
}

/** How long to watch, after an answer, for more (another frame, a close): a server that answers, then hangs up, differs from one that only answers. */
const CLOSE_WATCH_MS = 150
/** The same while comparing what comes back, all classes at once: long enough to see a close that takes its time. */
const OUTCOME_WATCH_MS = 1000
/** Most events an answer is made of; a server that keeps talking is cut there. */
const MAX_ANSWER_EVENTS = 8

/**
 * Sends one ciphertext of class `cls`, carrying random bytes of a random length as an attacker's
 * would, over a fresh session, and says what came back within `watch` ms of quiet after each
 * answer. Undefined when the handshake failed, or the class cannot be made for this key. The
 * same function drives our no-oracle tests.
 */
export async function probeCiphertextClass (context: ProbeContext, cls: CiphertextClass, watch = CLOSE_WATCH_MS): Promise<Answer | undefined> {
  const { connection, trace } = await openSession(context)
  try {
    const key = trace.serverKey
    if (!trace.done || key === undefined) return undefined
    const room = Math.ceil(key.bits / 8) - PKCS1_OVERHEAD
    let ciphertext: Buffer
    try {
      // To the key this connection showed: a server whose key changes is probed all the same.
      ciphertext = ciphertextOf(cls, key.key, crypto.randomBytes(1 + crypto.randomInt(Math.max(1, room))))
    } catch {
      // A block over the modulus (a wrong first byte, for a key of 8m + 1 bits) cannot be sent.
      return undefined
    }
    await letQuiet(connection)
    connection.send(encodeBase64(ciphertext))
    const first = await connection.next()
    const answer = classifyAnswer(first, context.client)
    for (let event = first, n = 1; n < MAX_ANSWER_EVENTS && event.kind === 'frame'; n++) {
      event = await connection.next(watch)
      if (event.kind === 'silence') break
      const seen = classify(event, context.client)
      answer.outcome += `, then ${seen.label}`
      answer.reply ??= seen.reply
    }
    return answer
  } finally {
    connection.destroy()
  }
}

/** Timing samples per class, taken one at a time, when the server answers; more of the classes that seem apart. */
const TIMING_SAMPLES = 3
const TIMING_CONFIRMATIONS = 5
/** Rounds of all classes at once: the first, and two more when the outcomes differ, to be sure. */
const OUTCOME_ROUNDS = 3
/** A difference in the median answer times this large, and at least this many times the fastest, is reported. */
const TIMING_GAP_MS = 25
const TIMING_GAP_RATIO = 2

/** One round of every class in `classes` at once; a class whose handshake failed is tried again alone, twice at most. */
async function outcomeRound (context: ProbeContext, classes: readonly CiphertextClass[]): Promise<Map<CiphertextClass, Answer>> {
  const answers = new Map<CiphertextClass, Answer>()
  const first = await Promise.all(classes.map(async (cls) => await probeCiphertextClass(context, cls, OUTCOME_WATCH_MS)))
  for (const [i, cls] of classes.entries()) {
    let answer = first[i]
    // A server that drops handshakes under load (maxPendingHandshakes) must not hide a class.
    for (let retry = 0; answer === undefined && retry < 2; retry++) answer = await probeCiphertextClass(context, cls, OUTCOME_WATCH_MS)
    if (answer !== undefined) answers.set(cls, answer)
  }
  return answers
}

/** The outcome seen most often for each class over the rounds (the first one's on a tie). */
function usualOutcomes (rounds: ReadonlyArray<Map<CiphertextClass, Answer>>): Map<CiphertextClass, string> {
  const usual = new Map<CiphertextClass, string>()
  for (const cls of CIPHERTEXT_CLASSES) {
    const seen = rounds.map((round) => round.get(cls)?.outcome).filter((outcome) => outcome !== undefined)
    if (seen.length === 0) continue
    const counts = new Map<string, number>()
    for (const outcome of seen) counts.set(outcome, (counts.get(outcome) ?? 0) + 1)
    usual.set(cls, [...counts].reduce((a, b) => b[1] > a[1] ? b : a)[0])
  }
  return usual
}

/**
 * The padding-oracle item. Every class of {@link CIPHERTEXT_CLASSES} at once, to compare what
 * comes back (the sequence of answers and a close within a second); when they differ, two more
 * rounds, and each class's usual outcome is compared. When all answer alike: whether every bad
 * class got one same reply and the valid class another (an error sent encrypted), and then,
 * unless the server is silent, a few of each class one at a time, to compare how fast. Fails
 * naming the classes told apart.
 */
export async function probePaddingOracle (context: ProbeContext, handshakes: boolean): Promise<ScanItem> {
  const id = 'oracle.padding'
  const title = 'padding oracle'
  const section = 'padding oracle'
  if (!handshakes) return item(section, id, title, 'n/a', 'needs a handshake, which failed')
  const rounds = [await outcomeRound(context, CIPHERTEXT_CLASSES)]
  let outcomes = usualOutcomes(rounds)
  if (!outcomes.has('valid') || outcomes.size < 2) {
    return item(section, id, title, 'fail', `could not be judged: handshakes for ${outcomes.has('valid') ? 'the bad classes' : 'the valid class'} kept failing (${outcomes.size} of ${CIPHERTEXT_CLASSES.length} classes probed)`)
  }
  if (groupBy(outcomes).size > 1) {
    // One odd round (a reset, a busy moment) is not an oracle: the usual outcome of three is.
    while (rounds.length < OUTCOME_ROUNDS) rounds.push(await outcomeRound(context, [...outcomes.keys()]))
    outcomes = usualOutcomes(rounds)
  }
  const classes = [...outcomes.keys()]
  const groups = groupBy(outcomes)
  if (groups.size > 1) {
    return item(section, id, title, 'fail', `padding oracle: ${[...groups].map(([outcome, members]) => `${outcome} for ${members.join(', ')}`).join('; ')}`)
  }
  const [outcome] = [...groups.keys()]
  const summary = `${outcome!} for all ${classes.length} classes (valid padding and ${classes.length - 1} kinds of bad)`
  if (constantErrorReply(rounds[0]!) !== undefined) {
    // One valid probe may, by its random length, get another reply than the bad ones: only an
    // error reply seen in every round counts.
    while (rounds.length < OUTCOME_ROUNDS) rounds.push(await outcomeRound(context, classes))
    const constant = rounds.map(constantErrorReply)
    if (constant.every((found) => found !== undefined)) return item(section, id, title, 'fail', `padding oracle: ${constant[0]!} (in each of ${rounds.length} rounds)`)
  }
  if (outcome === 'silence') return item(section, id, title, 'pass', summary)
  const times = new Map<CiphertextClass, number[]>(classes.map((cls) => [cls, []]))
  const sample = async (which: readonly CiphertextClass[], count: number): Promise<void> => {
    for (let i = 0; i < count; i++) {
      for (const cls of which) {
        const answer = await probeCiphertextClass(context, cls)
        if (answer !== undefined) times.get(cls)!.push(answer.ms)
      }
    }
  }
  await sample(classes, TIMING_SAMPLES)
  let gap = timingGap(times)
  // A gap is measured again, the classes taken in turn, before it is called an oracle: one busy
  // moment of the machine is not.
  if (gap.slow.length > 0) {
    await sample([gap.fastest, ...gap.slow], TIMING_CONFIRMATIONS)
    gap = timingGap(times)
  }
  const range = `median answer ${gap.low.toFixed(1)}–${gap.high.toFixed(1)} ms`
  if (gap.slow.length > 0) {
    const slow = gap.slow.map((cls) => `${cls} (${median(times.get(cls)!).toFixed(0)} ms)`)
    return item(section, id, title, 'fail', `padding oracle by timing: ${slow.join(', ')} against ${gap.low.toFixed(0)} ms for ${gap.fastest}`)
  }
  return item(section, id, title, 'pass', `${summary}; ${range}`)
}

/**
 * Replies whose content tells bad padding apart: the same plaintext for every bad class, another
 * for the valid one (an error sent encrypted). Implicit rejection gives each bad ciphertext a
 * plaintext of its own, and our valid probes carry random bytes, so neither looks constant.
 */
function constantErrorReply (round: Map<CiphertextClass, Answer>): string | undefined {
  const valid = round.get('valid')?.reply
  const bad = [...round].filter(([cls]) => cls !== 'valid').map(([, answer]) => answer.reply)
  if (valid === undefined || bad.length < 2 || bad.some((reply) => reply === undefined)) return undefined
  if (bad.every((reply) => reply === bad[0]) && bad[0] !== valid) {
    return `one same reply (${Buffer.from(bad[0]!, 'hex').length} bytes) for all ${bad.length} kinds of bad padding, another for valid`
  }
  return undefined
}

/** The classes whose median answer time is far (see {@link TIMING_GAP_MS}) above the fastest class's. */
function timingGap (times: Map<CiphertextClass, number[]>): { fastest: CiphertextClass, low: number, high: number, slow: CiphertextClass[] } {
  const medians = [...times].filter(([, ms]) => ms.length > 0).map(([cls, ms]) => [cls, median(ms)] as const)
  if (medians.length === 0) return { fastest: 'valid', low: 0, high: 0, slow: [] }
  const [fastest, low] = medians.reduce((a, b) => b[1] < a[1] ? b : a)
  const high = Math.max(...medians.map(([, ms]) => ms))
  const slow = medians.filter(([, ms]) => ms - low >= TIMING_GAP_MS && ms >= low * TIMING_GAP_RATIO).map(([cls]) => cls)
  return { fastest, low, high, slow }
}

function groupBy (outcomes: Map<CiphertextClass, string>): Map<string, CiphertextClass[]> {
  const groups = new Map<string, CiphertextClass[]>()
  for (const [cls, outcome] of outcomes) groups.set(outcome, [...(groups.get(outcome) ?? []), cls])
  return groups
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

// ---------------------------------------------------------------------------------------------
// Limits

/**
 * Default of the scan's `maxProbeBytes`: the most bytes of one endless frame sent. A server
 * that takes this much of one frame has no bound worth the name.
 */
export const DEFAULT_MAX_PROBE_BYTES = 16 * 1024 * 1024

/** How long a server that ended its side may read on before the endless-frame probe stops: our own lets go of a refused socket after 1 s. */
const ENDED_GRACE_MS = 3000

/** How much a server that ended its side may take after its end before that counts as reading on. */
const READ_ON_BYTES = 1024 * 1024

/** Bytes per write of an unterminated frame: Base64 letters, never a terminator. */
const FLOOD_CHUNK = Buffer.alloc(16 * 1024, 0x41)

/**
 * Sends one frame that never ends, up to `maxBytes`, before the handshake (step 1) or after it
 * (a message), and reports where the server stopped it.
 */
export async function probeUnterminatedFrame (context: ProbeContext, afterHandshake: boolean, maxBytes: number): Promise<ScanItem> {
  const id = afterHandshake ? 'limits.unterminated-message' : 'limits.unterminated-handshake'
  const title = afterHandshake ? 'an endless frame after the handshake' : 'an endless frame in the handshake'
  let connection: ProbeConnection
  if (afterHandshake) {
    const session = await openSession(context)
    connection = session.connection
    if (!session.trace.done) {
      connection.destroy()
      return item('limits', id, title, 'n/a', blocked(session.trace))
    }
  } else {
    checkDeadline(context)
    connection = await ProbeConnection.open(context.target, context.tally)
  }
  try {
    let sent = 0
    let endedAt: number | undefined
    let sentAtEnd = 0
    let readOn = false
    // Sent until the socket closes, the server stops reading, or the budget is spent. A server
    // that only ends its side (a FIN) may still read on: it gets a little while to close.
    let outOfTime = false
    while (sent < maxBytes && !connection.gone) {
      if (performance.now() > context.deadline) {
        outOfTime = true
        break
      }
      if (connection.closed) {
        if (endedAt === undefined) {
          endedAt = performance.now()
          sentAtEnd = sent
        }
        if (performance.now() - endedAt > ENDED_GRACE_MS || sent - sentAtEnd >= READ_ON_BYTES) {
          readOn = true
          break
        }
      }
      const chunk = FLOOD_CHUNK.subarray(0, Math.min(FLOOD_CHUNK.length, maxBytes - sent))
      sent += chunk.length
      if (!await connection.writeAndWait(chunk, context.target.timeout)) break
      // A write the system takes at once calls back before any socket is read: yield, so that
      // a close is seen (and, in one process, so that the server gets to read at all).
      await new Promise((resolve) => setImmediate(resolve))
    }
    const stopped = sent < maxBytes
    // What the server said meanwhile, and its close: for a write that failed (a reset), the close
    // is on its way; after the last byte, the server may yet hang up on it.
    const seen = connection.takeQueued()
    for (let i = 0; i < MAX_ANSWER_EVENTS && !connection.gone; i++) {
      const event = await connection.next(stopped ? CLOSE_WATCH_MS : context.target.timeout)
      seen.push(event)
      if (event.kind === 'silence' || (event.kind === 'closed' && connection.gone)) break
    }
    // Ended: it gets the rest of its grace to let go of the socket.
    if (connection.closed) await connection.goneWithin(ENDED_GRACE_MS - (performance.now() - (endedAt ?? performance.now())))
    const frames = seen.filter((event) => event.kind === 'frame')
    const said = frames.length === 0 ? '' : `answered ${describeEvent(frames[0]!)}, then `
    if (connection.gone) return item('limits', id, title, 'pass', `${said}closed the connection by the time we had sent ${formatBytes(sent)}`)
    if (outOfTime && !connection.gone && !connection.closed) return item('limits', id, title, 'warn', `${said}still reading when the scan's time (totalTimeout) ran out, ${formatBytes(sent)} sent`)
    if (readOn) return item('limits', id, title, 'warn', `${said}ended its side but read on (${formatBytes(sent - sentAtEnd)} more, ${formatBytes(sent)} sent in all)`)
    // Ended, and the budget spent before more could show whether it reads on: an end is its answer.
    if (connection.closed) return item('limits', id, title, 'pass', `${said}ended its side by the time we had sent ${formatBytes(sent)}`)
    if (stopped) return item('limits', id, title, 'warn', `${said}stopped reading after we had sent ${formatBytes(sent)}, but kept the connection open`)
    // Only a budget of the default size or more shows a server with no bound worth the name.
    const verdict: Verdict = maxBytes >= DEFAULT_MAX_PROBE_BYTES ? 'fail' : 'warn'
    return item('limits', id, title, verdict, `${said}took all ${formatBytes(sent)} of one frame (--max-probe-bytes) and kept the connection open`)
  } finally {
    connection.destroy()
  }
}

/** A connection that sends nothing: does the server drop it, and after how long? */
export async function probeSilentConnection (context: ProbeContext, wait: number): Promise<ScanItem> {
  const id = 'limits.silent'
  const title = 'a silent connection'
  const connection = await ProbeConnection.open(context.target, context.tally)
  try {
    const event = await connection.next(wait)
    if (event.kind === 'closed') return item('limits', id, title, 'pass', `closed after ${(event.ms / 1000).toFixed(1)} s (its handshake timeout)`)
    if (event.kind === 'silence') return item('limits', id, title, 'warn', `still open after ${(wait / 1000).toFixed(1)} s: no handshake timeout within that`)
    return item('limits', id, title, 'warn', `sent ${describeEvent(event)} unasked`)
  } finally {
    connection.destroy()
  }
}

/**
 * Offers a client key of `bits` bits at step 5; `mustRefuse`: a key that must be refused.
 * `client` undefined: not tried, for the reason `untried` gives.
 */
export async function probeClientKey (context: ProbeContext, bits: number, client: ProbeKey | undefined, authKeys: KeyPair | undefined, mustRefuse: boolean, untried = ''): Promise<ScanItem> {
  const id = `limits.key-${bits}`
  const title = `a ${bits}-bit client key`
  if (client === undefined) return item('limits', id, title, 'n/a', `not tried in the authenticated mode: ${untried}`)
  const { connection, trace } = await openSession(context, client, authKeys)
  connection.destroy()
  const step6 = trace.step6
  if (step6 === undefined) return item('limits', id, title, 'n/a', blocked(trace))
  if (trace.done) {
    return mustRefuse
      ? item('limits', id, title, 'fail', 'accepted: it sent its key check to a key anyone can factor')
      : item('limits', id, title, 'pass', 'accepted, as the standard allows (1024 bits is its lower bound)')
  }
  // Only P2SN:ERRORKEY or a close says "refused"; anything else at step 6 says nothing of the key.
  const event = step6.ok ? undefined : step6.event
  if (event !== undefined && (isKeyword(event, KEYWORD_ERRORKEY) || event.kind === 'closed')) {
    return item('limits', id, title, 'pass', `refused at step 6: ${describeEvent(event)}`)
  }
  return item('limits', id, title, 'n/a', `step 6 gave ${step6.ok ? 'nothing' : step6.evidence}: neither taken nor refused`)
}

/** A message of two blocks: p2sn's extension; the standard has one block per message. */
export async function probeMultiBlock (context: ProbeContext, oneBlockAnswered: boolean): Promise<ScanItem> {
  const id = 'limits.multi-block'
  const title = 'a message of two blocks'
  // A server that answers no message of one block says nothing of two.
  if (!oneBlockAnswered) return item('limits', id, title, 'n/a', 'a request of one block got no reply either (see conformance)')
  const { connection, trace } = await openSession(context)
  try {
    const key = trace.serverKey
    if (!trace.done || key === undefined) return item('limits', id, title, 'n/a', blocked(trace))
    const room = Math.ceil(key.bits / 8) - 11
    connection.send(messageFrame(key.key, Buffer.alloc(room + 16, 0x6d)))
    const answer = classifyAnswer(await connection.next(), context.client)
    if (answer.outcome === 'reply') return item('limits', id, title, 'pass', 'answered: it takes messages of several blocks (p2sn\'s extension)')
    return item('limits', id, title, 'pass', `not taken (${answer.evidence}): one block per message, as the standard has it`)
  } finally {
    connection.destroy()
  }
}

// ---------------------------------------------------------------------------------------------
// Identity and authentication

/** One key's verdict: the library's own rules (size, exponent, modulus) fail it, under 2048 bits warns. */
function judgeKey (key: ServerKey): { verdict: Verdict, evidence: string } {
  const described = `${key.bits} bits, exponent ${key.exponent}, ${key.fingerprint}`
  if (PRIVATE_LABELS.includes(key.label)) return { verdict: 'fail', evidence: `${described}: sent as its private key (${key.label}), which every client now has` }
  if (key.bits < 1024) return { verdict: 'fail', evidence: `${described} (under 1024 bits: factorable)` }
  try {
    // The rules p2sn holds its own peers to, one piece of code for both.
    toPublicKey(key.key)
  } catch (err) {
    return { verdict: 'fail', evidence: `${described}: ${(err as Error).message}` }
  }
  return key.bits < 2048 ? { verdict: 'warn', evidence: `${described} (under 2048 bits)` } : { verdict: 'pass', evidence: described }
}

/** PEM labels of private keys: a server that sends one gives its key away. */
const PRIVATE_LABELS = ['RSA PRIVATE KEY', 'PRIVATE KEY']

/** The server's key, and whether it stayed the same over every connection (or is among `allowed`). */
export function identityItems (context: ProbeContext, allowed: readonly string[]): ScanItem[] {
  const keys = [...context.keysSeen.values()]
  const first = keys[0]
  if (first === undefined) {
    return [
      item('identity', 'identity.key', 'the server\'s key', 'fail', 'no key was received at step 2'),
      item('identity', 'identity.same-key', 'the same key every time', 'n/a', 'no key was received')
    ]
  }
  const judged = keys.map(judgeKey)
  const worst = judged.find((j) => j.verdict === 'fail') ?? judged.find((j) => j.verdict === 'warn') ?? judged[0]!
  const items = [item('identity', 'identity.key', 'the server\'s key', worst.verdict, worst.evidence)]
  const seen = keys.map((key) => key.fingerprint)
  if (allowed.length > 0) {
    const unlisted = seen.filter((fp) => !allowed.includes(fp))
    items.push(unlisted.length === 0
      ? item('identity', 'identity.same-key', 'the same key every time', 'pass', `each key seen (${seen.length}) is one given with --fingerprint`)
      : item('identity', 'identity.same-key', 'the same key every time', 'fail', `not given with --fingerprint: ${unlisted.join(', ')}`))
  } else {
    items.push(seen.length === 1
      ? item('identity', 'identity.same-key', 'the same key every time', 'pass', `one key over ${context.tally.connections} connections`)
      : item('identity', 'identity.same-key', 'the same key every time', 'fail', `${seen.length} keys over ${context.tally.connections} connections: ${seen.join(', ')}; give each with --fingerprint if they are one fleet's`))
  }
  return items
}

/** Plain P2SN: a warning, since the protocol authenticates nobody. In the authenticated mode: what TLS proved, on every connection. */
export function authenticationItems (context: ProbeContext, session: Session | undefined, auth: boolean): ScanItem[] {
  const section = 'authentication'
  if (!auth) {
    return [item(section, 'auth.authentication', 'peers authenticated', 'warn', 'peers are not authenticated (a limit of the protocol; see SECURITY.md); scan with --auth for the authenticated mode')]
  }
  const tls = session?.connection.tls
  if (session === undefined || tls === undefined) return [item(section, 'auth.authentication', 'peers authenticated', 'fail', 'no tls session')]
  const proven = tls.peerKey.export({ type: 'pkcs1', format: 'der' })
  const items = [item(section, 'auth.authentication', 'peers authenticated', 'pass', `${tls.version}, mutual; the server proved the key ${fingerprintOf(proven)}`)]
  if (context.tlsCompared === 0) {
    items.push(item(section, 'auth.key-match', 'tls key is the p2sn key', 'n/a', 'no key was received at step 2'))
  } else if (context.tlsMismatches.length === 0) {
    items.push(item(section, 'auth.key-match', 'tls key is the p2sn key', 'pass', `the key proven in tls is the key sent at step 2, on all ${context.tlsCompared} handshakes`))
  } else {
    items.push(item(section, 'auth.key-match', 'tls key is the p2sn key', 'fail', `${context.tlsMismatches[0]!} (${context.tlsMismatches.length} of ${context.tlsCompared} handshakes): the fingerprint checked is not the key proven`))
  }
  return items
}
