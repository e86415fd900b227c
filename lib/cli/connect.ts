/**
 * `p2sn connect`: connects to a P2SN server (or speaks over `--stdio`), checks its key
 * against the known peers, and talks: request and reply by default, `--stream` otherwise.
 * @module
 */
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { wrap, type PeerInfo } from '../index.js'
import { checkExecCommand, expectNoPositionalsWithStdio, expectPositionals, parseFingerprint, parseMilliseconds, parsePort, type ParsedArgs } from './args.js'
import { CliError, UsageError, describeError, failure, systemReason } from './cli-error.js'
import type { Command } from './command.js'
import { processEndpoint, type Endpoint } from './endpoint.js'
import { execEndpoint, peerEnvironment, warnUnauthenticatedExec } from './exec.js'
import { EXIT, type ExitCode } from './exit-codes.js'
import { knownPeersPath, loadKeyPair } from './identity.js'
import { KnownPeers, peerTarget } from './known-peers.js'
import type { Framing } from './line-io.js'
import { setQuiet } from './log.js'
import { PeerCheck } from './peer-check.js'
import { Progress } from './progress.js'
import { relay } from './relay.js'
import { requestReply } from './request-reply.js'
import { StdioDuplex, checkStdioUse } from './stdio-duplex.js'
import { frameTracer } from './trace.js'
import { watchChannel } from './watched-channel.js'

const usage = `p2sn connect HOST PORT [--key FILE] [--auth] [--stream] [--raw] [--progress] [--exec CMD] [--keepalive MS]
                    [--fingerprint SHA256:…]... [--accept-new | --no-verify]
       p2sn connect --stdio --exec CMD [--key FILE] [--auth] [--stream] [--raw]`

export const connect: Command = {
  name: 'connect',
  summary: 'connect to a P2SN server: stdin lines are messages, replies are stdout lines',
  usage,
  help: `Usage: ${usage}

Connects to the P2SN server at HOST PORT. Each line of stdin is one message; each message
received is printed as one line on stdout. By default it works the standard's way, request
and reply: one message in flight, the next line sent when the reply is in (the Python
reference server loses a request that comes early). With --stream it sends without waiting,
for peers that do not answer one for one, such as p2sn listen relaying its stdin.

Plain P2SN authenticates nobody. Checking the server's key (known peers, --fingerprint)
keeps what you send readable only by that key's holder, but a man in the middle who knows
the server's public key can still read every reply and pass itself off. With --auth (the
server needs listen --auth), P2SN runs inside mutual TLS 1.3 with certificates made from both
sides' keys: the server proves the key it presents, so the checks below identify it.

Options:
  --key FILE             private key to use (default: the identity ~/.p2sn/identity.pem,
                         made on first use)
  --stream               send without waiting for replies
  --raw                  carry bytes, not lines (see "Lines and bytes")
  --progress             show bytes sent and received on stderr, for long transfers
  --exec CMD             talk for CMD instead of stdin and stdout: its stdout is sent, what
                         is received goes to its stdin (P2SN_PEER, P2SN_PEER_FINGERPRINT
                         and P2SN_PEER_AUTHENTICATED, 1 with --auth, are set for it)
  --auth                 the authenticated mode: mutual TLS 1.3 with certificates of both
                         sides' keys (the server needs listen --auth); a plain server
                         fails at once
  --stdio                speak P2SN over stdin and stdout instead of TCP (for example with
                         ssh at the other end); needs --exec
  --fingerprint SHA256:… accept only a server with this key (as p2sn listen and
                         p2sn fingerprint print it); repeat it to accept any of several
                         (while a fleet's key is rotated)
  --accept-new           accept a server whose key has changed, and add the new key to
                         its known_peers lines
  --keepalive MS         TCP keepalive: probe a silent server after MS ms, so that one that
                         vanished ends the connection, and a load balancer's idle timeout
                         does not cut a quiet one (the system counts whole seconds)
  --no-verify            accept any server key; read and write no known_peers
  --trace                print every frame on stderr: direction, step, length
  -q, --quiet            print nothing on stderr but errors and warnings
  -h, --help             show this help

Known peers (~/.p2sn/known_peers, like ssh's known_hosts): the first connection to
HOST:PORT records "HOST:PORT SHA256:..."; later connections must present a key of one of
the lines for HOST:PORT (several lines for one HOST:PORT accept any of their keys: add one
for a new key before the servers move to it). Another key is refused (exit 3) with the
fingerprints in the message; if the change is expected, run again with --fingerprint NEW,
which replaces the lines with one for NEW, or --accept-new, which adds a line for it, or
edit the file. Over --stdio there is no HOST:PORT: only --fingerprint checks the peer.

"cannot connect to HOST:PORT (...)" (exit 5) means no P2SN server answered: the connection
was refused, the host is unreachable or not found, or the server closed the connection
before it sent a byte (a full server, listen --max-connections). A server that answered but
failed the handshake exits 1.

Lines and bytes:
  Lines (default): each line of input is one message, without its newline (nor a CR
  before it); a last line without a newline is sent too. A message received is printed as
  exactly one line: one final newline in it is dropped, any other CR or LF becomes a
  space. Use --raw for exact bytes. A line must fit one message as a p2sn peer takes it
  by default, both ways: 32 RSA blocks of the smaller of the two keys (7,840 bytes at
  2048 bits); longer ones are refused.
  --raw: input is cut into messages of up to that size; messages received are written
  as they are, with nothing added.

Examples:
  echo hello | p2sn connect 127.0.0.1 7000
  p2sn connect 127.0.0.1 7000 --raw --stream --progress < backup.tar
  p2sn connect server.example 7000 --fingerprint SHA256:zQ3T…

Exit codes: 0 success, 1 failure at run time, 2 usage error, 3 peer key refused,
4 key file error, 5 cannot connect (details in p2sn --help).
`,
  options: {
    key: { type: 'string' },
    keepalive: { type: 'string' },
    stream: { type: 'boolean' },
    raw: { type: 'boolean' },
    progress: { type: 'boolean' },
    exec: { type: 'string' },
    stdio: { type: 'boolean' },
    fingerprint: { type: 'string', multiple: true },
    'accept-new': { type: 'boolean' },
    'no-verify': { type: 'boolean' },
    auth: { type: 'boolean' },
    trace: { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' }
  },
  async run (args) {
    const target = readTarget(args)
    const pins = [...new Set(args.strings('fingerprint').map((text) => parseFingerprint(text)))]
    const acceptNew = args.flag('accept-new')
    const noVerify = args.flag('no-verify')
    if (noVerify && (pins.length > 0 || acceptNew)) throw new UsageError(`--no-verify does not go with ${pins.length === 0 ? '--accept-new' : '--fingerprint'}`)
    if (pins.length > 0 && acceptNew) throw new UsageError('--accept-new does not go with --fingerprint, which names the keys to accept')
    const keepAliveText = args.string('keepalive')
    const keepAlive = keepAliveText === undefined ? undefined : parseMilliseconds(keepAliveText, '--keepalive', 1)
    if (keepAlive !== undefined && target === undefined) throw new UsageError('--keepalive does not go with --stdio, which carries no TCP')
    const command = args.string('exec')
    checkExecCommand(command)
    if (target === undefined) checkStdioUse(command !== undefined, '--exec CMD')
    setQuiet(args.flag('quiet'))
    const auth = args.flag('auth')
    if (command !== undefined && !auth) warnUnauthenticatedExec('server')
    const framing: Framing = args.flag('raw') ? 'raw' : 'lines'
    const keyPair = await loadKeyPair(args.string('key'))
    const name = target === undefined ? 'the server on stdio' : peerTarget(target.host, target.port)
    const check = new PeerCheck({
      target: target === undefined ? undefined : name,
      knownPeers: new KnownPeers(knownPeersPath()),
      pins,
      acceptNew,
      noVerify
    })

    let connected = target === undefined
    /** Bytes received from the server so far (over TCP). */
    let received = (): number => 1
    let transport: Duplex
    let stdio: StdioDuplex | undefined
    if (target === undefined) {
      stdio = new StdioDuplex()
      transport = stdio.duplex
    } else {
      const socket = net.connect({ host: target.host, port: target.port, allowHalfOpen: true })
      socket.once('connect', () => { connected = true })
      // Node counts whole seconds: below 1 s would be the system's own delay.
      if (keepAlive !== undefined) socket.setKeepAlive(true, Math.max(keepAlive, 1000))
      received = () => socket.bytesRead
      transport = socket
    }
    const watched = watchChannel(wrap(transport, {
      role: 'client',
      keyPair,
      verifyPeer: check.verifyPeer,
      trace: args.flag('trace') ? frameTracer() : undefined,
      authenticate: auth
    }))

    let peer: PeerInfo
    try {
      peer = await watched.handshake
    } catch (err) {
      if (check.refusal !== undefined) throw check.refusal
      if (!connected) throw new CliError(`cannot connect to ${name} (${flatten(systemReason(err, (e) => describeError(e).message))})`, EXIT.cannotConnect, { cause: err })
      if (received() === 0 && closedByPeer(err)) {
        throw new CliError(`cannot connect to ${name} (the server closed the connection before sending a byte: it may be full, or not speak this mode of p2sn; ${describeError(err).message})`, EXIT.cannotConnect, { cause: err })
      }
      throw failure(`handshake with ${name} failed`, err)
    }
    await check.record()

    const endpoint: Endpoint = command === undefined
      ? processEndpoint()
      : execEndpoint(command, peerEnvironment(target === undefined ? 'stdio' : name, peer))
    const progress = args.flag('progress') ? new Progress() : undefined
    let exitCode: ExitCode = EXIT.ok
    try {
      if (args.flag('stream')) await relay(watched, endpoint, { framing, progress })
      else exitCode = await requestReply(watched, endpoint, { framing, progress })
    } catch (err) {
      if (err instanceof CliError) throw err
      throw failure(name, err)
    } finally {
      progress?.stop()
    }
    await stdio?.flushed()
    return exitCode
  }
}

/** A reason without parentheses of its own, to go inside "(...)". */
function flatten (reason: string): string {
  return reason.replace(/ \((.*)\)$/, ': $1')
}

/**
 * True unless the handshake failed on our own time limit: with no byte received, any other
 * failure means that the server closed or reset the connection.
 */
function closedByPeer (err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (code === 'ERR_P2SN_HANDSHAKE_TIMEOUT' || code === 'ETIMEDOUT') return false
  }
  return true
}

/** HOST and PORT, or `undefined` with `--stdio`. */
function readTarget (args: ParsedArgs): { host: string, port: number } | undefined {
  if (args.flag('stdio')) {
    expectNoPositionalsWithStdio(args, 'HOST or PORT')
    return undefined
  }
  const [host, portText] = expectPositionals(args, ['HOST', 'PORT'])
  if (host!.trim() === '') throw new UsageError('HOST is empty')
  return { host: host!, port: parsePort(portText!) }
}
