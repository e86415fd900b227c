/**
 * `p2sn scan HOST PORT`: the report on p2sn's own listener (plain and `--auth`) and on a server
 * with a padding oracle, `--json`, `--fingerprint`, `--max-probe-bytes`, `--key`, the exit codes
 * (0 nothing failed, 1 an item failed or no server, 2 usage, 4 key file) and the help.
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import { expect } from 'chai'
import { SCAN_SECTIONS, createServer, generateKeyPair, type KeyPair, type ScanReport, type Verdict } from '../lib/index.js'
import { ROOT, cliBatchTimeout, lines, makeHome, runCli, startListener, unusedPort, useCliRoot, type CliResult } from './helpers/cli.js'
import { listenLocal } from './helpers/net.js'
import { authenticationContext } from '../lib/authentication.js'

/**
 * The time limit of one whole scan run. A scan of a listener on this machine takes about 5 s
 * alone (the timing samples of the padding oracle, one at a time, are most of it); the rest is
 * room for a loaded machine.
 */
const SCAN_RUN_MS = 45_000

/**
 * Bounds the silent-connection probe: every server scanned here drops a silent connection
 * after 1 s (`--handshake-timeout 1000`), so the probe need not wait its default 12 s.
 */
const FAST = ['--silence-timeout', '2000'] as const

/** The listener every full scan runs against: it answers each message, serves many clients, drops a silent one after 1 s. */
const LISTEN_ARGS = ['--echo', '--keep-open', '--handshake-timeout', '1000'] as const

/** The items of a plain scan, by id (the authenticated mode has `auth.key-match` too). */
const PLAIN_IDS = [
  'identity.key', 'identity.same-key',
  'conformance.step2', 'conformance.step4', 'conformance.keycheck', 'conformance.request', 'conformance.errorkey',
  'oracle.padding',
  'limits.unterminated-handshake', 'limits.unterminated-message', 'limits.key-1024', 'limits.key-512', 'limits.multi-block', 'limits.silent',
  'auth.authentication'
]

/** The section headings of the text report, in order. */
const HEADINGS = ['Identity', 'Conformance', 'Padding oracle', 'Limits', 'Authentication']

/** Where the output came from, for assertion messages. */
function where (result: CliResult): string {
  return `exit ${String(result.code ?? result.signal)}; stderr: ${JSON.stringify(result.stderr)}; stdout:\n${result.stdout.toString()}`
}

/** One line on stderr starting with "p2sn", no stack trace, nothing on stdout. */
function expectOneErrorLine (result: CliResult, exitCode: number): void {
  const context = where(result)
  expect(result.code, context).to.equal(exitCode)
  expect(lines(result.stderr), context).to.have.length(1)
  expect(result.stderr, context).to.match(/^p2sn[ :]/)
  expect(result.stderr, context).to.match(/\n$/)
  expect(result.stderr, context).not.to.match(/\n\s+at /)
  expect(result.stdout.length, context).to.equal(0)
}

/** Escapes `text` for a regular expression. */
function escape (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** The line of the text report for the item titled `title`: its verdict and evidence; fails when there is none. */
function itemLine (report: string, title: string): { verdict: string, evidence: string } {
  const match = new RegExp(`^ {2}(pass|warn|fail|n/a) +${escape(title)} {2,}(.*)$`, 'm').exec(report)
  expect(match, `no line for "${title}" in:\n${report}`).not.to.equal(null)
  return { verdict: match![1]!, evidence: match![2]! }
}

/** The lines of the text report that are items: verdict, title and evidence. */
function itemLines (report: string): string[] {
  return lines(report).filter((line) => /^ {2}(pass|warn|fail|n\/a) {2}/.test(line))
}

/** The lines of the text report that start a section. */
function headings (report: string): string[] {
  return lines(report).filter((line) => /^[A-Z]/.test(line) && !line.startsWith('Summary:'))
}

/** The report of `--json`; fails when stdout is not one JSON object. */
function parseReport (result: CliResult): ScanReport {
  const text = result.stdout.toString()
  let report: ScanReport
  try {
    report = JSON.parse(text) as ScanReport
  } catch (err) {
    throw new Error(`stdout is not JSON (${(err as Error).message}): ${where(result)}`)
  }
  expect(report, text).to.be.an('object')
  return report
}

/** The item `id` of `report`; fails when there is none. */
function itemOf (report: ScanReport, id: string): ScanReport['items'][number] {
  const found = report.items.find((it) => it.id === id)
  expect(found, `no item ${id} in ${JSON.stringify(report.items.map((it) => it.id))}`).not.to.equal(undefined)
  return found!
}

/** How many items of `report` have each verdict. */
function countVerdicts (report: ScanReport): Record<Verdict, number> {
  const counts: Record<Verdict, number> = { pass: 0, warn: 0, fail: 0, 'n/a': 0 }
  for (const it of report.items) counts[it.verdict]++
  return counts
}

/** Bytes in what `formatBytes` wrote ("48 KiB", "9.5 KiB", "512 B"). */
function bytesIn (evidence: string): number {
  const match = /sent (\d+(?:\.\d)?) (B|KiB|MiB)\b/.exec(evidence)
  expect(match, evidence).not.to.equal(null)
  return Number(match![1]) * { B: 1, KiB: 1024, MiB: 1024 * 1024 }[match![2] as 'B' | 'KiB' | 'MiB']
}

/** The wall-clock time of `run`, in ms, and its result. */
async function timed<T> (run: () => Promise<T>): Promise<{ ms: number, value: T }> {
  const started = performance.now()
  const value = await run()
  return { ms: performance.now() - started, value }
}

describe('p2sn scan', function () {
  const root = useCliRoot(this, 'p2sn-cli-scan-')
  let serverKey: KeyPair
  let otherKey: KeyPair
  let scannerKey: KeyPair

  before(async () => {
    [serverKey, otherKey, scannerKey] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()])
  })

  const serverHome = async (): Promise<string> => await makeHome(root(), serverKey.privateKey.toPem())

  /** Runs `p2sn scan 127.0.0.1 port args…` with an empty home of its own. */
  const scan = async (port: number, args: readonly string[], timeoutMs = SCAN_RUN_MS): Promise<CliResult & { home: string }> => {
    const home = await makeHome(root())
    const result = await runCli(['scan', '127.0.0.1', String(port), ...args], { home, timeoutMs })
    return { ...result, home }
  }

  describe('against p2sn listen', () => {
    it('prints every section in order, passes, warns that plain P2SN authenticates nobody, and exits 0', async function () {
      this.timeout(SCAN_RUN_MS + 20_000)
      const listener = await startListener(LISTEN_ARGS, { home: await serverHome() })
      const result = await scan(listener.port, FAST)
      const context = where(result)
      expect(result.code, context).to.equal(0)
      expect(result.stderr, context).to.equal('')
      const text = result.stdout.toString()
      expect(lines(text)[0], context).to.match(new RegExp(`^p2sn scan 127\\.0\\.0\\.1 ${listener.port} {2}\\(\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z\\)$`))
      expect(headings(text), context).to.deep.equal(HEADINGS)
      const padding = itemLine(text, 'padding oracle')
      expect(padding.verdict, context).to.equal('pass')
      expect(padding.evidence, context).to.match(/^reply for all 7 classes \(valid padding and 6 kinds of bad\)/)
      const auth = itemLine(text, 'peers authenticated')
      expect(auth.verdict, context).to.equal('warn')
      expect(auth.evidence, context).to.include('peers are not authenticated').and.to.include('--auth')
      expect(itemLine(text, 'the server\'s key').evidence, context).to.include(serverKey.publicKey.fingerprint)
      // p2sn's listener passes everything but the protocol's own limit.
      const items = itemLines(text)
      expect(items, context).to.have.length(PLAIN_IDS.length)
      expect(items.filter((line) => !line.startsWith('  pass  ')), context).to.deep.equal([items.find((line) => line.includes('peers authenticated'))])
      const summary = lines(text).at(-1)!
      expect(summary, context).to.match(/^Summary: ok: (\d+) pass, 1 warn, 0 fail, 0 n\/a \(\d+\.\d s, \d+ connections, \d+(\.\d)? (B|KiB|MiB) sent\)$/)
      expect(Number(/(\d+) pass/.exec(summary)![1]), context).to.equal(items.length - 1)
      // Each section is set off by an empty line, and the summary too.
      expect(text, context).to.match(/\n\nIdentity\n/).and.to.match(/\n\nSummary: /).and.to.match(/\n$/)
      // The scan has a key of its own: the identity in P2SN_HOME is neither used nor made.
      expect(await fs.readdir(result.home), 'P2SN_HOME').to.deep.equal([])
    })

    it('--json: one JSON object with every item of lib/scan/probes.ts, summary counts that match, failed false; exit 0', async function () {
      this.timeout(SCAN_RUN_MS + 20_000)
      const listener = await startListener(LISTEN_ARGS, { home: await serverHome() })
      const result = await scan(listener.port, [...FAST, '--json'])
      const context = where(result)
      expect(result.code, context).to.equal(0)
      expect(result.stderr, context).to.equal('')
      const report = parseReport(result)
      const ids = report.items.map((it) => it.id)
      expect(ids, context).to.have.members(PLAIN_IDS)
      expect(new Set(ids).size, 'ids are unique').to.equal(ids.length)
      // The ids the probes name (limits.key-N is made from the key size): all here, but auth.key-match, which needs --auth.
      const source = await fs.readFile(path.join(ROOT, 'lib', 'scan', 'probes.ts'), 'utf8')
      const named = new Set([...source.matchAll(/'((?:identity|conformance|oracle|limits|auth)\.[a-z0-9-]+)'/g)].map((m) => m[1]!))
      expect([...named].filter((id) => id !== 'auth.key-match'), 'ids in lib/scan/probes.ts').to.have.members(PLAIN_IDS.filter((id) => !/^limits\.key-\d+$/.test(id)))
      expect(source, 'lib/scan/probes.ts').to.include('`limits.key-${bits}`')
      // Items come grouped by section, in the report's order.
      const order = report.items.map((it) => SCAN_SECTIONS.indexOf(it.section))
      expect(order.every((o) => o >= 0), context).to.equal(true)
      expect(order, context).to.deep.equal([...order].sort((a, b) => a - b))
      for (const it of report.items) {
        expect(it.title, it.id).to.be.a('string').and.not.to.equal('')
        expect(it.evidence, it.id).to.be.a('string').and.not.to.equal('')
        expect(it.evidence, it.id).not.to.include('\n')
      }
      expect(report.summary, context).to.deep.equal(countVerdicts(report))
      expect(report.summary, context).to.deep.equal({ pass: PLAIN_IDS.length - 1, warn: 1, fail: 0, 'n/a': 0 })
      expect(report.failed, context).to.equal(false)
      expect(itemOf(report, 'oracle.padding').verdict, context).to.equal('pass')
      expect(itemOf(report, 'auth.authentication').verdict, context).to.equal('warn')
      expect(report.target, context).to.deep.equal({ host: '127.0.0.1', port: listener.port })
      expect(report.auth, context).to.equal(false)
      expect(new Date(report.startedAt).toISOString(), context).to.equal(report.startedAt)
      expect(report.durationMs, context).to.be.a('number').and.to.be.above(0)
      expect(report.connections, context).to.be.a('number').and.to.be.above(PLAIN_IDS.length)
      expect(report.bytesSent, context).to.be.a('number').and.to.be.above(0)
    })

    it('--auth against listen --auth: every step through TLS 1.3, the TLS key is the P2SN key; exit 0', async function () {
      this.timeout(SCAN_RUN_MS + 20_000)
      // listen --auth admits any client that proves its key (--allow would narrow that).
      const listener = await startListener([...LISTEN_ARGS, '--auth'], { home: await serverHome() })
      const result = await scan(listener.port, [...FAST, '--auth'])
      const context = where(result)
      expect(result.code, context).to.equal(0)
      expect(result.stderr, context).to.equal('')
      const text = result.stdout.toString()
      expect(lines(text)[0], context).to.match(new RegExp(`^p2sn scan 127\\.0\\.0\\.1 ${listener.port} --auth {2}\\(`))
      expect(headings(text), context).to.deep.equal(HEADINGS)
      const auth = itemLine(text, 'peers authenticated')
      expect(auth.verdict, context).to.equal('pass')
      expect(auth.evidence, context).to.equal(`TLSv1.3, mutual; the server proved the key ${listener.fingerprint}`)
      const match = itemLine(text, 'tls key is the p2sn key')
      expect(match.verdict, context).to.equal('pass')
      expect(itemLine(text, 'padding oracle').verdict, context).to.equal('pass')
      expect(itemLine(text, 'a request answered').verdict, context).to.equal('pass')
      // TLS takes no certificate of a 512-bit key, nor, on Node 22 and up (OpenSSL 3.5's
      // security level), of a 1024-bit one.
      expect(itemLine(text, 'a 512-bit client key').verdict, context).to.equal('n/a')
      const weak = await generateKeyPair({ bits: 1024 })
      const certifies1024 = ((): boolean => {
        try {
          authenticationContext(weak)
          return true
        } catch {
          return false
        }
      })()
      expect(itemLine(text, 'a 1024-bit client key').verdict, context).to.equal(certifies1024 ? 'pass' : 'n/a')
      const untried = certifies1024 ? 1 : 2
      expect(lines(text).at(-1), context).to.match(new RegExp(`^Summary: ok: \\d+ pass, 0 warn, 0 fail, ${untried} n/a \\(`))
    })

    it('--auth against a plain listener: the authentication item fails at once; exit 1', async function () {
      this.timeout(SCAN_RUN_MS)
      const listener = await startListener(LISTEN_ARGS, { home: await serverHome() })
      // A long --timeout: a quick exit shows that the scan did not wait for it.
      const { ms, value: result } = await timed(async () => await scan(listener.port, ['--auth', '--timeout', '20000'], 15_000))
      const context = where(result)
      expect(result.code, context).to.equal(1)
      expect(result.stderr, context).to.equal('')
      const text = result.stdout.toString()
      const auth = itemLine(text, 'peers authenticated')
      expect(auth.verdict, context).to.equal('fail')
      expect(auth.evidence, context).to.match(/tls 1\.3 handshake with the server failed/i)
      expect(lines(text).at(-1), context).to.match(/^Summary: FAIL: 0 pass, 0 warn, 1 fail, 0 n\/a \(/)
      expect(ms, 'ms to exit').to.be.below(10_000)
    })

    it('--fingerprint: the listener\'s own passes, repeated for a fleet too; another key fails with exit 1', async function () {
      // One after another: a scan measures answer times, and two at once on two cores would skew them.
      this.timeout(3 * SCAN_RUN_MS + 20_000)
      const listener = await startListener(LISTEN_ARGS, { home: await serverHome() })
      expect(listener.fingerprint).to.equal(serverKey.publicKey.fingerprint)
      const other = otherKey.publicKey.fingerprint

      const own = await scan(listener.port, [...FAST, '--fingerprint', listener.fingerprint])
      expect(own.code, where(own)).to.equal(0)
      const ownText = own.stdout.toString()
      expect(itemLine(ownText, 'the server\'s key').verdict, where(own)).to.equal('pass')
      const ownSame = itemLine(ownText, 'the same key every time')
      expect(ownSame.verdict, where(own)).to.equal('pass')
      expect(ownSame.evidence, where(own)).to.match(/^each key seen \(1\) is one given with --fingerprint$/)

      const fleet = await scan(listener.port, [...FAST, '--fingerprint', other, '--fingerprint', listener.fingerprint])
      expect(fleet.code, where(fleet)).to.equal(0)
      expect(itemLine(fleet.stdout.toString(), 'the same key every time').verdict, where(fleet)).to.equal('pass')

      const wrong = await scan(listener.port, [...FAST, '--fingerprint', other])
      expect(wrong.code, where(wrong)).to.equal(1)
      expect(wrong.stderr, where(wrong)).to.equal('')
      const wrongText = wrong.stdout.toString()
      const wrongSame = itemLine(wrongText, 'the same key every time')
      expect(wrongSame.verdict, where(wrong)).to.equal('fail')
      expect(wrongSame.evidence, where(wrong)).to.equal(`not given with --fingerprint: ${listener.fingerprint}`)
      expect(lines(wrongText).at(-1), where(wrong)).to.match(/^Summary: FAIL: \d+ pass, 1 warn, 1 fail, 0 n\/a \(/)
    })

    it('--max-probe-bytes 64K bounds each endless frame, and --key FILE is the key the scan connects with; exit 0', async function () {
      this.timeout(SCAN_RUN_MS + 20_000)
      const listener = await startListener(LISTEN_ARGS, { home: await serverHome() })
      const keyFile = path.join(root(), 'scanner.pem')
      await fs.writeFile(keyFile, scannerKey.privateKey.toPem(), { mode: 0o600 })
      const result = await scan(listener.port, [...FAST, '--json', '--max-probe-bytes', '64K', '--key', keyFile])
      const context = where(result)
      expect(result.code, context).to.equal(0)
      expect(result.stderr, context).to.equal('')
      const report = parseReport(result)
      expect(report.failed, context).to.equal(false)
      for (const id of ['limits.unterminated-handshake', 'limits.unterminated-message']) {
        const it = itemOf(report, id)
        expect(it.verdict, context).to.equal('pass')
        expect(bytesIn(it.evidence), it.evidence).to.be.at.most(64 * 1024)
      }
      // The listener logs the key of each handshake: the scanner's is the one in the file.
      await listener.cli.waitForStderr(new RegExp(`connected with key ${escape(scannerKey.publicKey.fingerprint)}`))
    })
  })

  describe('against a server with a padding oracle', () => {
    it('fails the padding-oracle item (text and --json); exit 1', async function () {
      this.timeout(2 * SCAN_RUN_MS + 20_000)
      // rejection 'error': a bad padding closes the connection, a valid one is answered.
      const server = createServer({ keyPair: serverKey, handler: (m) => m, rejection: 'error', handshakeTimeout: 1000 })
      try {
        const port = await listenLocal(server)
        const result = await scan(port, FAST)
        const context = where(result)
        expect(result.code, context).to.equal(1)
        expect(result.stderr, context).to.equal('')
        const text = result.stdout.toString()
        expect(headings(text), context).to.deep.equal(HEADINGS)
        const padding = itemLine(text, 'padding oracle')
        expect(padding.verdict, context).to.equal('fail')
        expect(padding.evidence, context).to.match(/^padding oracle: reply for valid; close for /)
        expect(lines(text).at(-1), context).to.match(/^Summary: FAIL: \d+ pass, \d+ warn, 1 fail, \d+ n\/a \(/)

        const json = await scan(port, [...FAST, '--json'])
        expect(json.code, where(json)).to.equal(1)
        const report = parseReport(json)
        expect(report.failed, where(json)).to.equal(true)
        expect(itemOf(report, 'oracle.padding').verdict, where(json)).to.equal('fail')
        expect(report.summary, where(json)).to.deep.equal(countVerdicts(report))
        expect(report.summary.fail, where(json)).to.equal(1)
      } finally {
        server.destroy()
      }
    })
  })

  describe('no server', () => {
    it('nothing listening: exit 1 at once, one line saying it cannot connect', async function () {
      this.timeout(30_000)
      const port = await unusedPort()
      const { ms, value: result } = await timed(async () => await scan(port, ['--timeout', '20000'], 15_000))
      expectOneErrorLine(result, 1)
      expect(result.stderr).to.match(new RegExp(`^p2sn: cannot connect to 127\\.0\\.0\\.1:${port}: `))
      // Refused at once, not after --timeout.
      expect(ms, 'ms to exit').to.be.below(10_000)
    })

    it('--max-probe-bytes takes K, M and G (1024s), in either case, up to 1G: past the checks to "cannot connect" (exit 1)', async function () {
      const values = ['64K', '64k', '1M', '2m', '1G', '1024M', '1048576', '1']
      this.timeout(cliBatchTimeout(values.length))
      const port = await unusedPort()
      const results = await Promise.all(values.map(async (value) => await scan(port, ['--max-probe-bytes', value], undefined)))
      for (const [i, result] of results.entries()) {
        expectOneErrorLine(result, 1)
        expect(result.stderr, values[i]).to.include('cannot connect')
      }
    })
  })

  describe('usage', () => {
    const good = 'SHA256:' + 'A'.repeat(43)
    const cases: Array<[string[], RegExp]> = [
      [['scan'], /missing HOST/],
      [['scan', '127.0.0.1'], /missing PORT/],
      [['scan', '127.0.0.1', 'PORT', 'extra'], /unexpected argument 'extra'/],
      [['scan', '127.0.0.1', '0'], /bad port '0'/],
      [['scan', '127.0.0.1', '65536'], /bad port '65536'/],
      [['scan', '127.0.0.1', 'http'], /bad port 'http'/],
      [['scan', '127.0.0.1', 'PORT', '--timeout', 'soon'], /bad --timeout 'soon'/],
      [['scan', '127.0.0.1', 'PORT', '--timeout', '0'], /bad --timeout '0'/],
      [['scan', '127.0.0.1', 'PORT', '--timeout', '1.5'], /bad --timeout '1\.5'/],
      [['scan', '127.0.0.1', 'PORT', '--timeout'], /option --timeout needs a value/],
      [['scan', '127.0.0.1', 'PORT', '--silence-timeout', '0'], /bad --silence-timeout '0'/],
      [['scan', '127.0.0.1', 'PORT', '--total-timeout', 'soon'], /bad --total-timeout 'soon'/],
      [['scan', '127.0.0.1', 'PORT', '--max-probe-bytes', '0'], /bad --max-probe-bytes '0'/],
      [['scan', '127.0.0.1', 'PORT', '--max-probe-bytes', '2G'], /bad --max-probe-bytes '2G'/],
      [['scan', '127.0.0.1', 'PORT', '--max-probe-bytes', '1025M'], /bad --max-probe-bytes '1025M'/],
      [['scan', '127.0.0.1', 'PORT', '--max-probe-bytes', 'x'], /bad --max-probe-bytes 'x'/],
      [['scan', '127.0.0.1', 'PORT', '--max-probe-bytes', '1.5M'], /bad --max-probe-bytes '1\.5M'/],
      [['scan', '127.0.0.1', 'PORT', '--max-probe-bytes', '64KB'], /bad --max-probe-bytes '64KB'/],
      [['scan', '127.0.0.1', 'PORT', '--max-probe-bytes=-1'], /bad --max-probe-bytes '-1'/],
      [['scan', '127.0.0.1', 'PORT', '--fingerprint', 'SHA256:x'], /bad --fingerprint 'SHA256:x'/],
      [['scan', '127.0.0.1', 'PORT', '--fingerprint', 'abc'], /bad --fingerprint 'abc'/],
      [['scan', '127.0.0.1', 'PORT', '--fingerprint', good, '--fingerprint', 'MD5:00'], /bad --fingerprint 'MD5:00'/],
      [['scan', '127.0.0.1', 'PORT', '--frob'], /unknown option --frob/],
      [['scan', '127.0.0.1', 'PORT', '--auth=yes'], /option --auth takes no value/]
    ]

    it('each mistake: exit 2 at once, one line on stderr naming it and pointing to p2sn scan --help', async function () {
      this.timeout(cliBatchTimeout(cases.length))
      // Nothing listens there, should a mistake slip through to a scan.
      const port = String(await unusedPort())
      const home = await makeHome(root())
      const results = await Promise.all(cases.map(async ([args]) => await runCli(args.map((arg) => arg === 'PORT' ? port : arg), { home })))
      for (const [i, result] of results.entries()) {
        const [args, problem] = cases[i]!
        const label = args.join(' ')
        expectOneErrorLine(result, 2)
        expect(result.stderr, label).to.match(/^p2sn scan: /)
        expect(result.stderr, label).to.match(problem)
        expect(result.stderr, label).to.match(/\(see p2sn scan --help\)\n$/)
      }
    })

    it('--key FILE that does not exist: exit 4 (key file error), one line naming the file', async () => {
      const missing = path.join(root(), 'no-such-key.pem')
      const result = await scan(await unusedPort(), ['--key', missing], undefined)
      expectOneErrorLine(result, 4)
      expect(result.stderr).to.include(missing)
    })
  })

  describe('help', () => {
    const flags = ['--auth', '--json', '--timeout', '--fingerprint', '--max-probe-bytes', '--silence-timeout', '--total-timeout', '--key', '--help']

    it('scan --help, help scan, and --help after a mistake: the usage and every flag; exit 0', async function () {
      this.timeout(cliBatchTimeout(3))
      const runs = [['scan', '--help'], ['help', 'scan'], ['scan', '127.0.0.1', '--frob', '-h']]
      const results = await Promise.all(runs.map(async (args) => await runCli(args, { home: root() })))
      for (const [i, result] of results.entries()) {
        const label = runs[i]!.join(' ')
        expect(result.code, label).to.equal(0)
        expect(result.stderr, label).to.equal('')
        const text = result.stdout.toString()
        expect(text, label).to.match(/^Usage: p2sn scan HOST PORT /)
        for (const flag of flags) {
          expect(text, `${label}: ${flag}`).to.include(flag)
          // Each has a line of its own under Options.
          expect(text, `${label}: ${flag}`).to.match(new RegExp(`^ {2}(-h, )?${flag}\\b`, 'm'))
        }
        for (const heading of HEADINGS) expect(text, label).to.include(heading)
        expect(text, label).to.match(/Exit codes: 0 nothing failed, 1 an item failed or the server could not be reached,\s+2 usage error/)
      }
    })

    it('p2sn --help lists the scan command and its usage', async () => {
      const result = await runCli(['--help'], { home: root() })
      expect(result.code).to.equal(0)
      expect(result.stderr).to.equal('')
      const text = result.stdout.toString()
      expect(text).to.match(/^ {2}scan +audit a P2SN server/m)
      expect(text).to.match(/^ {2}p2sn scan HOST PORT \[--auth\] \[--json\]/m)
      expect(text).to.include('[--max-probe-bytes N] [--silence-timeout MS] [--total-timeout MS] [--key FILE]')
    })
  })
})
