// scanServer() against our own server, in each configuration that changes what it reports: every
// item's verdict is checked (a full map, so that a missing or extra item fails too), with the
// evidence where it carries the point; then the bytes a scan sends, and how it fails.
import { expect } from 'chai'
import { once } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'
import {
  CIPHERTEXT_CLASSES, createServer, selfSignedCertificate, wrap, generateKeyPair, P2snError, scanServer, SCAN_SECTIONS,
  type KeyPair, type ScanOptions, type ScanReport, type ScanSection, type Server, type ServerOptions, type Verdict
} from '../lib/index.js'
import { authenticationContext } from '../lib/authentication.js'
import { ALL_RIGHT, type Verdicts } from './helpers/scan-verdicts.js'
import { expectP2snError } from './helpers/errors.js'
import { listenLocal, relayTo, unusedPort } from './helpers/net.js'
import { expectNoLeakedResources, resourceBaseline, within } from './helpers/timing.js'

/** The server's handshake timeout in every test but the first: short, so that limits.silent is quick. */
const HANDSHAKE_TIMEOUT = 1000
/** How long the scanner waits on a silent connection in every test but the first. */
const SILENCE_TIMEOUT = 1500

type VerdictMap = Verdicts

/** What a scan of our server in its default configuration reports (any key of 2048 bits). */
/** Whether this runtime's TLS certifies `keyPair` (OpenSSL 3.5's default security level takes no 1024-bit key). */
function certifies (keyPair: KeyPair): boolean {
  try {
    authenticationContext(keyPair)
    return true
  } catch {
    return false
  }
}

const OUR_SERVER = ALL_RIGHT

/** The section each id's prefix belongs to. */
const SECTION_OF: Record<string, ScanSection> = {
  identity: 'identity', conformance: 'conformance', oracle: 'padding oracle', limits: 'limits', auth: 'authentication'
}

/** Each item's verdict by id; fails when an id comes twice. */
function verdicts (report: ScanReport): VerdictMap {
  const map: VerdictMap = {}
  for (const item of report.items) {
    expect(map, `item ${item.id} reported once`).to.not.have.property(item.id)
    map[item.id] = item.verdict
  }
  return map
}

/** The evidence of item `id`, which must be there. */
function evidence (report: ScanReport, id: string): string {
  const item = report.items.find((it) => it.id === id)
  expect(item, `item ${id}`).to.not.equal(undefined)
  return item!.evidence
}

/** What holds of every report: its target, summary and `failed` agree with its items, in section order. */
function expectConsistent (report: ScanReport, port: number, auth = false): void {
  expect(report.target).to.deep.equal({ host: '127.0.0.1', port })
  expect(report.auth).to.equal(auth)
  expect(Number.isNaN(Date.parse(report.startedAt))).to.equal(false)
  const counts: Record<Verdict, number> = { pass: 0, warn: 0, fail: 0, 'n/a': 0 }
  for (const item of report.items) {
    counts[item.verdict]++
    expect(item.section, item.id).to.equal(SECTION_OF[item.id.split('.')[0]!])
    expect(item.title, item.id).to.be.a('string').and.not.equal('')
    expect(item.evidence, item.id).to.be.a('string').and.not.equal('')
  }
  expect(report.summary).to.deep.equal(counts)
  expect(report.failed).to.equal(counts.fail > 0)
  const order = report.items.map((item) => SCAN_SECTIONS.indexOf(item.section))
  expect(order).to.deep.equal([...order].sort((a, b) => a - b))
  expect(report.connections).to.be.above(0)
}

/** Length of the Base64 of `n` bytes. */
function base64Length (n: number): number {
  return 4 * Math.ceil(n / 3)
}

describe('scanServer() against our own server', function () {
  this.timeout(30_000)

  let serverKeys: KeyPair
  let weakKeys: KeyPair
  let scannerKeys: KeyPair
  let baseline: Record<string, number> | undefined
  before(async function () {
    [serverKeys, weakKeys, scannerKeys] = await Promise.all([
      generateKeyPair({ bits: 2048 }), generateKeyPair({ bits: 1024 }), generateKeyPair({ bits: 2048 })
    ])
    baseline = await resourceBaseline()
  })
  after(async function () {
    await expectNoLeakedResources(baseline)
  })

  const servers: Server[] = []
  const closers: Array<() => Promise<void>> = []
  afterEach(async function () {
    await Promise.all(closers.splice(0).map(async (close) => { await close() }))
    await Promise.all(servers.splice(0).map(async (server) => {
      const closed = once(server, 'close')
      server.destroy()
      await closed
    }))
  })

  /** Our server with `options`, listening on 127.0.0.1; destroyed after the test. */
  async function serve (options: ServerOptions): Promise<{ server: Server, port: number }> {
    const server = createServer(options)
    servers.push(server)
    return { server, port: await listenLocal(server) }
  }

  /** Our server with a 2048-bit key, an echo handler and the short handshake timeout, plus `options`. */
  async function serveFast (options: ServerOptions = {}): Promise<number> {
    const { port } = await serve({ keyPair: serverKeys, handler: (message) => message, handshakeTimeout: HANDSHAKE_TIMEOUT, ...options })
    return port
  }

  /** scanServer() with the scanner's own 2048-bit key (not the server's) and the short silence wait. */
  async function scan (port: number, options: Partial<ScanOptions> = {}): Promise<ScanReport> {
    return await scanServer({ port, keyPair: scannerKeys, silenceTimeout: SILENCE_TIMEOUT, ...options })
  }

  it('passes our server as it comes, warns that plain P2SN authenticates nobody, and sees its 10 s handshake timeout', async function () {
    this.timeout(45_000)
    const { port } = await serve({ keyPair: serverKeys, handler: (message) => message })
    const report = await scanServer({ port, silenceTimeout: 12_000 })
    expectConsistent(report, port)
    expect(verdicts(report)).to.deep.equal(OUR_SERVER)
    expect(report.failed).to.equal(false)
    expect(report.summary).to.deep.equal({ pass: 14, warn: 1, fail: 0, 'n/a': 0 })
    expect(evidence(report, 'identity.key')).to.include('2048 bits').and.include(serverKeys.publicKey.fingerprint)
    expect(evidence(report, 'identity.same-key')).to.include(`one key over ${report.connections} connections`)
    expect(evidence(report, 'conformance.step2')).to.include('base64')
    expect(evidence(report, 'oracle.padding')).to.include(`for all ${CIPHERTEXT_CLASSES.length} classes`)
    expect(evidence(report, 'limits.multi-block')).to.include('several blocks')
    const auth = evidence(report, 'auth.authentication')
    expect(auth).to.include('not authenticated').and.include('SECURITY.md')
    // The server's default handshake timeout is 10 s: the silent connection is dropped then.
    const silent = /closed after (\d+\.\d) s/.exec(evidence(report, 'limits.silent'))
    expect(silent, evidence(report, 'limits.silent')).to.not.equal(null)
    expect(Number(silent![1])).to.be.within(9.5, 11)
    // Seconds: the silent connection runs alongside the other probes, not after them.
    expect(report.durationMs).to.be.within(9_000, 30_000)
  })

  // Found by an attacker's review: the valid class's handshake, launched first, was the one a
  // full server dropped, and the oracle passed; and a key of 8m + 1 bits made one class
  // impossible to send, which made the whole item a warning.
  it('still fails rejection: \'error\' on a server that drops handshakes beyond two (maxPendingHandshakes), and with a 1025-bit key', async function () {
    this.timeout(60_000)
    for (const options of [{ maxPendingHandshakes: 2 }, { keyPair: await generateKeyPair({ bits: 1025 }) }]) {
      const port = await serveFast({ rejection: 'error', ...options })
      const report = await scan(port)
      const oracle = report.items.find((i) => i.id === 'oracle.padding')!
      expect(oracle.verdict, oracle.evidence).to.equal('fail')
      expect(oracle.evidence).to.match(/for valid[;]/)
    }
  })

  it('fails a server with rejection: \'error\' for a padding oracle, naming the classes told apart', async function () {
    const port = await serveFast({ rejection: 'error' })
    const report = await scan(port)
    expectConsistent(report, port)
    expect(verdicts(report)).to.deep.equal({ ...OUR_SERVER, 'oracle.padding': 'fail' })
    expect(report.failed).to.equal(true)
    const said = evidence(report, 'oracle.padding')
    expect(said).to.match(/^padding oracle: /)
    // "outcome for class, class; outcome for class, …": valid padding alone in one group, every
    // bad class in the other.
    const groups = said.replace(/^padding oracle: /, '').split('; ').map((group) => {
      const [outcome, classes] = group.split(' for ')
      return { outcome: outcome!, classes: classes!.split(', ') }
    })
    expect(groups).to.have.length(2)
    const valid = groups.find((group) => group.classes.includes('valid'))
    const bad = groups.find((group) => !group.classes.includes('valid'))
    expect(valid?.classes).to.deep.equal(['valid'])
    expect(valid?.outcome).to.equal('reply')
    expect(bad?.classes).to.have.members(CIPHERTEXT_CLASSES.filter((cls) => cls !== 'valid'))
    expect(bad?.classes).to.include('wrong first byte')
    expect(bad?.outcome).to.not.equal('reply')
  })

  it('sees strict: true refuse a message of two blocks, and still no oracle', async function () {
    const port = await serveFast({ strict: true })
    const report = await scan(port)
    expectConsistent(report, port)
    expect(verdicts(report)).to.deep.equal(OUR_SERVER)
    expect(evidence(report, 'limits.multi-block')).to.include('one block per message')
    expect(evidence(report, 'oracle.padding')).to.include(`for all ${CIPHERTEXT_CLASSES.length} classes`)
  })

  it('warns of serverKeyEncoding: \'pem\', the Python reference\'s raw PEM at step 2', async function () {
    const port = await serveFast({ serverKeyEncoding: 'pem' })
    const report = await scan(port)
    expectConsistent(report, port)
    expect(verdicts(report)).to.deep.equal({ ...OUR_SERVER, 'conformance.step2': 'warn' })
    expect(evidence(report, 'conformance.step2')).to.include('raw pem')
  })

  it('warns of a 1024-bit server key', async function () {
    const port = await serveFast({ keyPair: weakKeys })
    const report = await scan(port)
    expectConsistent(report, port)
    expect(verdicts(report)).to.deep.equal({ ...OUR_SERVER, 'identity.key': 'warn' })
    expect(evidence(report, 'identity.key')).to.include('1024 bits').and.include(weakKeys.publicKey.fingerprint)
  })

  it('fails a server with no handler for leaving a request unanswered, and finds no oracle in its silence', async function () {
    const { port } = await serve({ keyPair: serverKeys, handshakeTimeout: HANDSHAKE_TIMEOUT })
    const report = await scan(port, { timeout: 1500 })
    expectConsistent(report, port)
    expect(verdicts(report)).to.deep.equal({
      ...OUR_SERVER, 'conformance.request': 'fail', 'limits.multi-block': 'n/a'
    })
    expect(report.failed).to.equal(true)
    expect(evidence(report, 'conformance.request')).to.include('expected a reply')
    expect(evidence(report, 'oracle.padding')).to.include('silence')
  })

  it('passes the authenticated mode scanned with auth: TLS 1.3 proved the very key of step 2', async function () {
    const { port } = await serve({ keyPair: serverKeys, handler: (message) => message, authenticate: true, handshakeTimeout: HANDSHAKE_TIMEOUT })
    const report = await scan(port, { auth: true })
    expectConsistent(report, port, true)
    // Node 22 and up (OpenSSL 3.5) take no TLS certificate of a 1024-bit key: not tried there.
    expect(verdicts(report)).to.deep.equal({
      ...OUR_SERVER, 'limits.key-1024': certifies(weakKeys) ? 'pass' : 'n/a', 'limits.key-512': 'n/a', 'auth.authentication': 'pass', 'auth.key-match': 'pass'
    })
    expect(report.failed).to.equal(false)
    expect(evidence(report, 'auth.authentication')).to.include('TLSv1.3').and.include(serverKeys.publicKey.fingerprint)
  })

  // The claim "fails a server whose TLS key is not the key it sends at step 2", attacked: TLS
  // proves one key (its certificate's), the P2SN handshake over it presents another.
  it('fails auth.key-match for a server whose TLS certificate is of another key than its P2SN key', async function () {
    const tlsKeys = await generateKeyPair({ bits: 2048 })
    const sockets: tls.TLSSocket[] = []
    const server = tls.createServer({
      key: tlsKeys.privateKey.toPem(), cert: selfSignedCertificate(tlsKeys), minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false
    }, (socket) => {
      sockets.push(socket)
      const channel = wrap(socket, { role: 'server', keyPair: serverKeys, handshakeTimeout: HANDSHAKE_TIMEOUT })
      channel.on('error', () => {})
      channel.on('data', (message: Buffer) => { channel.write(message) })
    })
    const port = await listenLocal(server)
    try {
      const report = await scan(port, { auth: true })
      const match = report.items.find((i) => i.id === 'auth.key-match')!
      expect(match.verdict, match.evidence).to.equal('fail')
      expect(match.evidence).to.include(`tls proved ${tlsKeys.publicKey.fingerprint} but step 2 sent ${serverKeys.publicKey.fingerprint}`)
      expect(report.failed).to.equal(true)
    } finally {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('fails a plain server scanned with auth, at once rather than at a timeout', async function () {
    // The server's own handshake timeout (10 s) and the scanner's (10 s) both far off: a quick
    // failure is the TLS handshake failing, not anyone giving up.
    const { port } = await serve({ keyPair: serverKeys, handler: (message) => message })
    const started = performance.now()
    const report = await within(3000, scan(port, { auth: true, timeout: 10_000, silenceTimeout: 10_000 }), 'the scan')
    expect(performance.now() - started).to.be.below(3000)
    expectConsistent(report, port, true)
    expect(verdicts(report)).to.deep.equal({ 'auth.authentication': 'fail' })
    expect(report.failed).to.equal(true)
    expect(evidence(report, 'auth.authentication')).to.include('tls')
  })

  it('passes identity.same-key for a server whose key is among the fingerprints given, and fails it otherwise', async function () {
    this.timeout(40_000)
    const port = await serveFast()
    const own = serverKeys.publicKey.fingerprint
    const listed = await scan(port, { fingerprints: [own] })
    expectConsistent(listed, port)
    expect(verdicts(listed)).to.deep.equal(OUR_SERVER)
    expect(evidence(listed, 'identity.same-key')).to.include('given with --fingerprint')

    const other = weakKeys.publicKey.fingerprint
    const unlisted = await scan(port, { fingerprints: [other] })
    expectConsistent(unlisted, port)
    expect(verdicts(unlisted)).to.deep.equal({ ...OUR_SERVER, 'identity.same-key': 'fail' })
    expect(unlisted.failed).to.equal(true)
    expect(evidence(unlisted, 'identity.same-key')).to.include(own).and.not.include(other)
  })

  describe('bytes sent', function () {
    /**
     * A relay in front of the server that counts the connections and the bytes that reach it from
     * the scanner, so that the report's own counts are checked against the wire.
     */
    async function countingRelay (serverPort: number): Promise<{ port: number, wire: { connections: number, bytes: number } }> {
      const wire = { connections: 0, bytes: 0 }
      const sockets: net.Socket[] = []
      const relay = relayTo(serverPort, (socket, upstream) => {
        wire.connections++
        sockets.push(socket, upstream)
        socket.on('data', (chunk: Buffer) => {
          wire.bytes += chunk.length
          upstream.write(chunk)
        })
        socket.on('end', () => { upstream.end() })
        // A faithful relay: the server's socket gone, the scanner's goes too.
        upstream.on('close', () => { socket.destroy() })
      })
      const port = await listenLocal(relay)
      closers.push(async () => {
        for (const socket of sockets) socket.destroy()
        await new Promise((resolve) => relay.close(resolve))
      })
      return { port, wire }
    }

    /**
     * The most a scan can send: each of its two floods stops at `maxProbeBytes`, and every
     * connection carries at most one handshake (P2SN:PUBKEY, a key check of one block to the
     * server's key, the scanner's 2048-bit PEM in Base64 — the largest client key it offers) and
     * one message of at most two blocks (the multi-block probe; the request and the padding
     * probes are one block).
     */
    function bytesBound (connections: number, maxProbeBytes: number): number {
      const k = serverKeys.publicKey.size
      const handshake = 'P2SN:PUBKEY'.length + 1 + base64Length(k) + 1 + base64Length(scannerKeys.publicKey.toPem().length) + 1
      const message = base64Length(2 * k) + 1
      return 2 * maxProbeBytes + connections * (handshake + message)
    }

    it('stays within two floods of maxProbeBytes plus the handshakes, when our server stops each flood first', async function () {
      const maxProbeBytes = 64 * 1024
      const { port, wire } = await countingRelay(await serveFast())
      const report = await scan(port, { maxProbeBytes })
      expect(verdicts(report)).to.deep.equal(OUR_SERVER)
      // Through the relay the server's close may reach the scanner as an end (a FIN) only.
      for (const id of ['limits.unterminated-handshake', 'limits.unterminated-message']) {
        expect(evidence(report, id)).to.match(/closed the connection|ended its side by the time/)
      }
      expect(report.connections).to.equal(wire.connections)
      expect(report.connections).to.be.at.most(60)
      // What reached the server was handed to the socket, and counted, first.
      expect(wire.bytes).to.be.at.most(report.bytesSent)
      expect(report.bytesSent).to.be.at.most(bytesBound(report.connections, maxProbeBytes))
    })

    it('stops each flood at maxProbeBytes when that is below the server\'s limits', async function () {
      // 4 KiB is under our server's 8 KiB limit on a handshake frame and its limit on a message,
      // so each flood is cut by the scanner, and the server, whose handshake timeout (10 s) is
      // far off, keeps both connections open: the scanner reports that as it finds it, a warning,
      // since a budget under the default (16 MiB) cannot show that the server has no bound.
      const maxProbeBytes = 4 * 1024
      const { port: serverPort } = await serve({ keyPair: serverKeys, handler: (message) => message })
      const { port, wire } = await countingRelay(serverPort)
      const report = await scan(port, { maxProbeBytes, timeout: 1500 })
      expect(verdicts(report)).to.deep.equal({
        ...OUR_SERVER, 'limits.unterminated-handshake': 'warn', 'limits.unterminated-message': 'warn', 'limits.silent': 'warn'
      })
      for (const id of ['limits.unterminated-handshake', 'limits.unterminated-message']) {
        expect(evidence(report, id)).to.include('took all 4.0 KiB')
      }
      expect(report.connections).to.equal(wire.connections)
      expect(wire.bytes).to.be.at.most(report.bytesSent)
      // Both floods went out whole, and no more.
      expect(wire.bytes).to.be.at.least(2 * maxProbeBytes)
      expect(report.bytesSent).to.be.at.most(bytesBound(report.connections, maxProbeBytes))
    })
  })

  describe('failures', function () {
    it('rejects with ERR_P2SN_CONNECTION, at once, when nothing listens', async function () {
      const port = await unusedPort()
      const started = performance.now()
      const err = await expectP2snError(within(3000, scan(port, { timeout: 10_000 }), 'the rejection'), 'ERR_P2SN_CONNECTION')
      expect(err).to.be.an.instanceof(P2snError)
      expect(err.message).to.include(`127.0.0.1:${port}`)
      expect(performance.now() - started).to.be.below(3000)
    })

    it('rejects bad options with ERR_P2SN_INVALID_ARGUMENT before connecting', async function () {
      let connections = 0
      const listener = net.createServer((socket) => {
        connections++
        socket.destroy()
      })
      const port = await listenLocal(listener)
      closers.push(async () => { await new Promise((resolve) => listener.close(resolve)) })
      const bad: Array<[Partial<ScanOptions>, string]> = [
        [{ port: 0 }, 'port'],
        [{ port: 65536 }, 'port'],
        [{ port: 1.5 }, 'port'],
        [{ port: Number.NaN }, 'port'],
        [{ timeout: -1 }, 'timeout'],
        [{ timeout: 0 }, 'timeout'],
        [{ timeout: 1.5 }, 'timeout'],
        [{ silenceTimeout: 0 }, 'silenceTimeout'],
        [{ maxProbeBytes: 0 }, 'maxProbeBytes'],
        [{ maxProbeBytes: -5 }, 'maxProbeBytes']
      ]
      for (const [options, name] of bad) {
        const err = await expectP2snError(scanServer({ port, keyPair: scannerKeys, ...options }), 'ERR_P2SN_INVALID_ARGUMENT')
        expect(err.message, JSON.stringify(options)).to.include(name)
      }
      expect(connections).to.equal(0)
    })

    // Every wait is a timer, and Node fires a timer over 2^31 − 1 ms at once: such a wait (and a
    // flood without a bound) is refused before any connection, never cut to 1 ms.
    it('refuses a wait too long for a timer, and a flood without a bound, before connecting', async function () {
      const port = await serveFast()
      for (const options of [{ timeout: Infinity }, { timeout: 2 ** 31 }, { silenceTimeout: Infinity }, { silenceTimeout: 2 ** 31 }, { maxProbeBytes: Infinity }]) {
        const err = await expectP2snError(scan(port, options), 'ERR_P2SN_INVALID_ARGUMENT')
        expect(err.message).to.include(Object.keys(options)[0])
      }
      // The longest timer there is is honoured.
      const report = await scan(port, { silenceTimeout: 2 ** 31 - 1, timeout: 2 ** 31 - 1 }).catch((err: Error) => err)
      expect(report).to.not.be.instanceOf(Error)
    })
  })
})
