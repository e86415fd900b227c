/**
 * `p2sn scan HOST PORT`: audits a P2SN server, ours or another's, and prints a graded report.
 * @module
 */
import { formatScanReport, scanServer } from '../index.js'
import { expectPositionals, parseFingerprint, parseMilliseconds, parsePort } from './args.js'
import { UsageError } from './cli-error.js'
import type { Command } from './command.js'
import { stdout } from './endpoint.js'
import { EXIT } from './exit-codes.js'
import { readPrivateKeyFile } from './key-file.js'

const usage = `p2sn scan HOST PORT [--auth] [--json] [--timeout MS] [--fingerprint SHA256:…]...
                 [--max-probe-bytes N] [--silence-timeout MS] [--total-timeout MS] [--key FILE]`

/** Most bytes `--max-probe-bytes` takes: 1 GiB. */
const MAX_PROBE_BYTES = 1024 * 1024 * 1024

/** A byte count for `--max-probe-bytes`: a whole number, with an optional K, M or G (powers of 1024). */
export function parseByteCount (text: string): number {
  const match = /^(\d{1,10})([KMG]?)$/i.exec(text)
  const scale = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[(match?.[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G']
  const bytes = match === null ? NaN : Number(match[1]) * scale
  if (!(bytes >= 1 && bytes <= MAX_PROBE_BYTES)) {
    throw new UsageError(`bad --max-probe-bytes '${text}'; choose a number of bytes from 1 to 1G (K, M and G count 1024s)`)
  }
  return bytes
}

export const scan: Command = {
  name: 'scan',
  summary: 'audit a P2SN server: conformance, padding oracle, limits, authentication',
  usage,
  help: `Usage: ${usage}

Connects to the P2SN server at HOST PORT as many times as it needs, probes it, and prints a
report: each item pass, warn, fail or n/a, with one line of what was seen. Works on any
P2SN server, p2sn's or the Python reference's. Each probe is bounded in time; a scan of a
server on this machine takes seconds.

  Identity        the server's key (warn under 2048 bits, fail under 1024), and the same
                  key on every connection (or each one listed with --fingerprint)
  Conformance     each handshake step as the standard has it; a request answered;
                  P2SN:ERRORKEY for a key check made to another key
  Padding oracle  ciphertexts with valid padding and with six kinds of bad padding: fail
                  when the answers (reply, P2SN:ERRORKEY, close, silence) or their times
                  tell them apart (Bleichenbacher's attack reads messages through that)
  Limits          an endless frame before and after the handshake (up to
                  --max-probe-bytes each), a silent connection, a 1024-bit and a 512-bit
                  client key (fail when 512 is taken), a message of two blocks
  Authentication  plain P2SN proves nobody's identity: a warning; with --auth the scan
                  runs through the authenticated mode and checks that the key TLS proves
                  is the key the server sends

Options:
  --auth                  scan through the authenticated mode (mutual TLS 1.3, as
                          p2sn listen --auth serves it)
  --json                  print the report as one JSON object
  --timeout MS            longest wait for a connection and for each answer (default 3000)
  --fingerprint SHA256:…  a key the server may show; repeat it for a fleet whose key is
                          rotating. Without it every connection must show the same key
  --max-probe-bytes N     most bytes of each endless frame sent (default 16M; K, M, G)
  --silence-timeout MS    how long a silent connection waits to be dropped (default 12000,
                          above p2sn's 10 s handshake timeout)
  --total-timeout MS      longest the whole scan may take (default 120000): probes not
                          begun by then are not run, and their items say so
  --key FILE              the scanner's own private key (default: a new 2048-bit key; the
                          identity in ~/.p2sn is not used)
  -h, --help              show this help

Example:
  p2sn scan 127.0.0.1 7000
  p2sn scan server.example 7000 --auth --fingerprint SHA256:zQ3T…

Exit codes: 0 nothing failed, 1 an item failed or the server could not be reached,
2 usage error, 4 key file error (details in p2sn --help).
`,
  options: {
    auth: { type: 'boolean' },
    json: { type: 'boolean' },
    timeout: { type: 'string' },
    fingerprint: { type: 'string', multiple: true },
    'max-probe-bytes': { type: 'string' },
    'silence-timeout': { type: 'string' },
    'total-timeout': { type: 'string' },
    key: { type: 'string' }
  },
  async run (args) {
    const [host, portText] = expectPositionals(args, ['HOST', 'PORT'])
    const port = parsePort(portText!)
    const timeoutText = args.string('timeout')
    const silenceText = args.string('silence-timeout')
    const totalText = args.string('total-timeout')
    const bytesText = args.string('max-probe-bytes')
    const keyFile = args.string('key')
    const report = await scanServer({
      host: host!,
      port,
      auth: args.flag('auth'),
      fingerprints: [...new Set(args.strings('fingerprint').map((text) => parseFingerprint(text)))],
      timeout: timeoutText === undefined ? undefined : parseMilliseconds(timeoutText, '--timeout', 1),
      silenceTimeout: silenceText === undefined ? undefined : parseMilliseconds(silenceText, '--silence-timeout', 1),
      totalTimeout: totalText === undefined ? undefined : parseMilliseconds(totalText, '--total-timeout', 1),
      maxProbeBytes: bytesText === undefined ? undefined : parseByteCount(bytesText),
      keyPair: keyFile === undefined ? undefined : await readPrivateKeyFile(keyFile)
    })
    stdout().write(args.flag('json') ? JSON.stringify(report, null, 2) + '\n' : formatScanReport(report))
    return report.failed ? EXIT.failure : EXIT.ok
  }
}
