/**
 * `scanServer()`: a conformance and security audit of any P2SN server, ours or another's, the
 * way ssh-audit and testssl.sh audit SSH and TLS servers. What `p2sn scan` runs.
 * @module
 */
import { checkLimit } from '../arguments.js'
import { authenticationContext } from '../authentication.js'
import { P2snError } from '../errors.js'
import { generateKeyPair, type KeyPair } from '../keys.js'
import { makeProbeKey, probeKeyOf } from './handshake-probe.js'
import {
  DEFAULT_MAX_PROBE_BYTES, ScanTimeUp, authenticationItems, identityItems, item, probeClientKey, probeConformance, probeErrorKey, probeMultiBlock,
  openSession, probeContext, probePaddingOracle, probeSilentConnection, probeUnterminatedFrame
} from './probes.js'
import { SCAN_SECTIONS, summarize, type ScanItem, type ScanReport, type ScanSection } from './report.js'

export { DEFAULT_MAX_PROBE_BYTES } from './probes.js'

/** Options of {@link scanServer}. */
export interface ScanOptions {
  /** Host of the server. Default `'127.0.0.1'`. */
  host?: string
  /** Its port. */
  port: number
  /** Scan through the authenticated mode (mutual TLS 1.3 under P2SN), as `p2sn listen --auth` serves it. Default false. */
  auth?: boolean
  /** The scanner's own key, for the handshakes meant to succeed. Default: a new 2048-bit key. */
  keyPair?: KeyPair
  /** Fingerprints (`SHA256:…`) the server may present, as a fleet's servers do while a key rotates. Default: none; then every connection must show one key. */
  fingerprints?: readonly string[]
  /** Longest wait, in ms, for a connection and for each answer. Default 3000. */
  timeout?: number
  /**
   * How long, in ms, the whole scan may take: a probe not begun by then is not run (its item
   * says so), so that a server that answers each probe at the last moment cannot hold the scan
   * for minutes. Default 120000.
   */
  totalTimeout?: number
  /** How long, in ms, a silent connection waits for the server to drop it. Default 12000 (p2sn's handshake timeout is 10 s). */
  silenceTimeout?: number
  /**
   * Most bytes of one endless frame sent, in each of the two probes that send one. Default 16
   * MiB; a server that takes all of a smaller budget is a warning, not a failure.
   */
  maxProbeBytes?: number
}

/** Default of {@link ScanOptions.timeout}. */
export const DEFAULT_SCAN_TIMEOUT = 3000
/** Default of {@link ScanOptions.totalTimeout}. */
export const DEFAULT_TOTAL_TIMEOUT = 120_000
/** Default of {@link ScanOptions.silenceTimeout}. */
export const DEFAULT_SILENCE_TIMEOUT = 12_000

/** The longest delay a timer takes (about 24.8 days); a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1

/** A wait of the scan: a whole number of ms from 1 to {@link MAX_TIMER_MS}, since every one is a timer. */
function checkTimer (name: string, value: number | undefined, fallback: number): number {
  const ms = checkLimit(name, value, fallback, 1)
  if (ms > MAX_TIMER_MS) throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `${name} must be at most ${MAX_TIMER_MS} ms (a scan waits for everything), not ${String(value)}`)
  return ms
}

/** Why this runtime's TLS cannot certify `keyPair` for the authenticated mode, or undefined when it can. */
function tlsRefusal (keyPair: KeyPair): string | undefined {
  try {
    authenticationContext(keyPair)
    return undefined
  } catch (err) {
    return ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message
  }
}

/**
 * A probe that could not run (the server stopped taking connections, or the scan's time ran
 * out): the item says so instead of the scan failing. A warning, but for the padding oracle,
 * whose absence is what the scan is asked to show: not shown, it fails.
 */
async function attempt (section: ScanSection, id: string, title: string, probe: () => Promise<ScanItem>): Promise<ScanItem> {
  try {
    return await probe()
  } catch (err) {
    const why = err instanceof ScanTimeUp ? 'not run: the scan\'s time (totalTimeout) ran out' : `could not be run: ${(err as Error).message}`
    return item(section, id, title, id === 'oracle.padding' ? 'fail' : 'warn', why)
  }
}

/**
 * Connects to a P2SN server as many times as the probes need, each bounded in time, and reports
 * each item as pass, warn, fail or n/a with one line of evidence: the server's key, each
 * handshake step, a padding oracle, its limits, and authentication.
 *
 * @example
 * const report = await scanServer({ host: 'localhost', port: 7000 })
 * process.stdout.write(formatScanReport(report))
 * @throws P2snError `ERR_P2SN_CONNECTION` when not even the first connection can be made,
 *   `ERR_P2SN_INVALID_ARGUMENT` for bad options
 */
export async function scanServer (options: ScanOptions): Promise<ScanReport> {
  const { host = '127.0.0.1', port, auth = false, fingerprints = [] } = options
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `port must be a whole number from 1 to 65535, not ${String(port)}`)
  const timeout = checkTimer('timeout', options.timeout, DEFAULT_SCAN_TIMEOUT)
  const silenceTimeout = checkTimer('silenceTimeout', options.silenceTimeout, DEFAULT_SILENCE_TIMEOUT)
  const totalTimeout = checkTimer('totalTimeout', options.totalTimeout, DEFAULT_TOTAL_TIMEOUT)
  const maxProbeBytes = checkLimit('maxProbeBytes', options.maxProbeBytes, DEFAULT_MAX_PROBE_BYTES, 1)
  if (maxProbeBytes === Infinity) throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'maxProbeBytes must be a whole number of bytes, not Infinity: a probe never sends without a bound')
  const startedAt = new Date().toISOString()
  const start = performance.now()

  // The keys, made at once: the 1024-bit one is a key pair, since the authenticated mode certifies it.
  const [client, pair1024, key512] = await Promise.all([
    options.keyPair ?? generateKeyPair({ bits: 2048 }),
    generateKeyPair({ bits: 1024 }),
    auth ? undefined : makeProbeKey(512)
  ])
  const context = probeContext({ host, port, timeout, authKeys: auth ? client : undefined }, probeKeyOf(client), totalTimeout - (performance.now() - start))
  const { tally } = context
  const finish = (items: ScanItem[]): ScanReport => {
    const order = (section: ScanSection): number => SCAN_SECTIONS.indexOf(section)
    const sorted = items.map((it, i) => ({ it, i })).sort((a, b) => order(a.it.section) - order(b.it.section) || a.i - b.i).map(({ it }) => it)
    return { target: { host, port }, auth, startedAt, durationMs: Math.round(performance.now() - start), ...tally, items: sorted, ...summarize(sorted) }
  }

  let conformance
  try {
    conformance = await probeConformance(context)
  } catch (err) {
    if (!(err instanceof P2snError) || err.code !== 'ERR_P2SN_AUTHENTICATION') throw err
    // A server that cannot run the authenticated mode: nothing else can be checked through it.
    return finish([item('authentication', 'auth.authentication', 'peers authenticated', 'fail', err.message)])
  }
  const { session } = conformance
  try {
    const silent = attempt('limits', 'limits.silent', 'a silent connection', async () => await probeSilentConnection(context, silenceTimeout))
    const items = [...conformance.items]
    items.push(await attempt('conformance', 'conformance.errorkey', 'P2SN:ERRORKEY for a bad key check', async () => await probeErrorKey(context)))
    // A server that failed the first handshake may pass the next (one that drops connections
    // in turn): the oracle, which the scan must not miss, gets one more try to find out.
    let handshakes = session.trace.done
    if (!handshakes) {
      try {
        const retry = await openSession(context)
        retry.connection.destroy()
        handshakes = retry.trace.done
      } catch {
        // No second connection either: the oracle item says the handshake failed.
      }
    }
    items.push(await attempt('padding oracle', 'oracle.padding', 'padding oracle', async () => await probePaddingOracle(context, handshakes)))
    items.push(await attempt('limits', 'limits.unterminated-handshake', 'an endless frame in the handshake', async () => await probeUnterminatedFrame(context, false, maxProbeBytes)))
    items.push(await attempt('limits', 'limits.unterminated-message', 'an endless frame after the handshake', async () => await probeUnterminatedFrame(context, true, maxProbeBytes)))
    // OpenSSL 3.5's default security level (Node 22 and up) takes no certificate of a 1024-bit key.
    const tls1024 = auth ? tlsRefusal(pair1024) : undefined
    const probe1024 = tls1024 === undefined ? probeKeyOf(pair1024) : undefined
    items.push(await attempt('limits', 'limits.key-1024', 'a 1024-bit client key', async () => await probeClientKey(context, 1024, probe1024, auth ? pair1024 : undefined, false, `this runtime's tls takes no certificate of it (${tls1024 ?? ''})`)))
    items.push(await attempt('limits', 'limits.key-512', 'a 512-bit client key', async () => await probeClientKey(context, 512, key512, undefined, true, 'tls takes no certificate of a key this small')))
    items.push(await attempt('limits', 'limits.multi-block', 'a message of two blocks', async () => await probeMultiBlock(context, conformance.answered)))
    items.push(await silent)
    items.push(...identityItems(context, fingerprints))
    items.push(...authenticationItems(context, session, auth))
    return finish(items)
  } finally {
    session.connection.destroy()
  }
}
