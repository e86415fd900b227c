/**
 * `p2sn listen`: accepts P2SN connections (or one over `--stdio`) and serves them by relaying
 * stdio, by echoing, or through a child process per connection.
 * @module
 */
import net from 'node:net'
import {
  DEFAULT_DRAIN_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_HANDSHAKES, RsaPool, wrap,
  type Channel, type KeyPair, type PeerInfo, type TraceEvent, type WrapOptions
} from '../index.js'
import { readProxyHeader } from '../server.js'
import {
  checkExecCommand, expectNoPositionalsWithStdio, expectPositionals, parseConnections, parseFingerprint, parseMilliseconds, parsePort,
  parseWorkers, type ParsedArgs
} from './args.js'
import { Broadcast } from './broadcast.js'
import { CliError, UsageError, describeError, failure, systemReason } from './cli-error.js'
import type { Command } from './command.js'
import { ConnectionLog, connectionLabel, parseLogFormat } from './connection-log.js'
import { echo } from './echo.js'
import { processEndpoint } from './endpoint.js'
import { execEndpoint, killChildren, peerEnvironment, warnUnauthenticatedExec } from './exec.js'
import { EXIT } from './exit-codes.js'
import { loadKeyPair } from './identity.js'
import { peerTarget } from './known-peers.js'
import type { Framing } from './line-io.js'
import { note, printError, setQuiet } from './log.js'
import { relay } from './relay.js'
import { DrainHandle } from './session.js'
import { onFirstSignal } from './signals.js'
import { StdioDuplex, checkStdioUse } from './stdio-duplex.js'
import { frameTracer } from './trace.js'
import { watchChannel, type WatchedChannel } from './watched-channel.js'

const usage = `p2sn listen PORT [--host 127.0.0.1] [--key FILE] [--keep-open] [--echo | --exec CMD] [--raw] [--workers N]
                   [--auth [--allow SHA256:…]...] [--max-connections N] [--handshake-timeout MS]
                   [--idle-timeout MS] [--drain-timeout MS] [--keepalive MS] [--proxy-protocol]
                   [--log-format text|json]
       p2sn listen --stdio (--echo | --exec CMD) [--key FILE] [--raw] [--workers N] [--auth [--allow SHA256:…]...]
                   [--handshake-timeout MS] [--idle-timeout MS] [--drain-timeout MS]`

/** After the drain timeout, how long the log and the connections' last lines get before p2sn exits anyway. */
const FORCED_EXIT_GRACE = 1000

/** Everything a listener needs, from the command line and the key. */
interface ListenSettings {
  port: number
  host: string
  keyPair: KeyPair
  keepOpen: boolean
  echo: boolean
  command: string | undefined
  framing: Framing
  serverKeyEncoding: 'base64' | 'pem'
  trace: boolean
  /** Worker threads for the private-key operations, shared by every connection; none: inline. */
  workers: number | undefined
  /** `--auth`: the authenticated mode, P2SN inside mutual TLS 1.3. */
  auth: boolean
  /** `--allow`: the only client keys admitted (proven ones, since it needs `--auth`); empty: any. */
  allow: ReadonlySet<string>
  /** `--max-connections`: open connections at most; more are closed at once. */
  maxConnections: number
  /** `--handshake-timeout` in ms (0: none); it bounds a PROXY header too. */
  handshakeTimeout: number
  /** `--idle-timeout` in ms: a channel with no message either way for that long is closed (0: never). */
  idleTimeout: number
  /** `--drain-timeout` in ms: how long a drain on SIGTERM or SIGINT waits before closing what is left. */
  drainTimeout: number
  /** `--keepalive` in ms: TCP keepalive's idle time before the first probe; off when undefined. */
  keepAlive: number | undefined
  /** `--proxy-protocol`: each connection starts with a PROXY header (v1 or v2). */
  proxyProtocol: boolean
  /** The connection log, in the `--log-format` chosen. */
  log: ConnectionLog
}

export const listen: Command = {
  name: 'listen',
  summary: 'accept P2SN connections and serve them: relay stdio, --echo, or --exec CMD',
  usage,
  help: `Usage: ${usage}

Accepts P2SN connections on PORT. By default it relays its own stdin and stdout: each line
of stdin is sent as one message, and each message received is printed as one line. It does
not answer one for one, so talk to it with "p2sn connect --stream". It serves the first
client whose handshake succeeds, then exits when that connection is over; with --keep-open
it serves any number at once until interrupted, and stdin goes to every client.

On start it prints "p2sn: listening on HOST:PORT with key SHA256:..." on stderr: give that
fingerprint to clients (connect --fingerprint). PORT 0 picks a free port.

Each connection gets lines on stderr, with an ISO 8601 time (UTC): "opened" (the client's
address), "connected with key SHA256:..." (the handshake), and "closed after S s, N messages
in, M out: REASON". A connection that closes without sending a byte (a TCP probe), or right
after asking for the server's key (a health check), gets none. --log-format json writes one
JSON object per line instead, with the fields time, event (listening, opened, handshake,
closed, refused, drain), address, port, fingerprint, durationMs, messagesIn, messagesOut,
reason and code, where they apply.

SIGTERM or SIGINT drains: no new connection is accepted, handshakes under way are dropped,
each channel answers what it has read (--echo; --exec: the child gets it, then end of file,
and what it writes until it exits is sent; relaying stdio: our side ends) and is ended; p2sn
exits 0 once every connection is over. Those still open after --drain-timeout are closed and
p2sn exits 1. A second signal stops at once (exit 130 for SIGINT, 143 for SIGTERM).

Plain P2SN authenticates nobody: a client's fingerprint is the key it claims, and anyone who
knows a public key can claim it. With --auth, P2SN runs inside mutual TLS 1.3 with
certificates made from both sides' keys, so each side proves the key it presents; clients
need connect --auth. Only then does a fingerprint identify a client, and only then can
--allow admit chosen clients.

Options:
  --host ADDR        address to listen on (default 127.0.0.1; 0.0.0.0 or :: for every
                     interface)
  --key FILE         private key to use (default: the identity ~/.p2sn/identity.pem,
                     made on first use)
  --keep-open        serve many connections, at the same time, until interrupted
  --echo             answer each message with itself
  --exec CMD         run CMD with the shell for each connection: messages received go to
                     its stdin, its stdout is sent back; its environment has P2SN_PEER
                     (the client's address), P2SN_PEER_FINGERPRINT (its key) and
                     P2SN_PEER_AUTHENTICATED (1 with --auth, when the key is proven; 0
                     without, when it is only claimed: do not trust it then)
  --auth             the authenticated mode: mutual TLS 1.3 with certificates of both
                     sides' P2SN keys; clients must prove the key they present, and must
                     use connect --auth too (plain clients fail at once)
  --allow SHA256:…   with --auth: admit only a client with this key; repeat it to admit
                     several
  --raw              carry bytes, not lines (see "Lines and bytes" in p2sn connect --help)
  --stdio            speak P2SN over stdin and stdout instead of TCP, for one connection
                     (for example at the far end of ssh); needs --echo or --exec
  --workers N        decrypt in N worker threads, shared by every connection, instead of
                     on the main thread: for a busy --keep-open server on a machine with
                     several cores (N = the number of cores is usual)
  --pem-server-key   send this side's key as raw PEM, which the Python reference client
                     needs (the standard, and the default, is Base64)
  --max-connections N    open connections at most (default ${DEFAULT_MAX_CONNECTIONS}); more
                     are closed at once, before a byte is sent (connect says "cannot connect")
  --handshake-timeout MS  close a connection whose handshake (and PROXY header) is not
                     done within MS ms (default ${DEFAULT_HANDSHAKE_TIMEOUT}; 0: no limit)
  --idle-timeout MS  close a channel when no message went either way for MS ms (default 0:
                     never)
  --drain-timeout MS how long SIGTERM or SIGINT lets connections finish before closing them
                     (default ${DEFAULT_DRAIN_TIMEOUT}; 0: close them at once)
  --keepalive MS     TCP keepalive: probe a silent client after MS ms, so that a vanished one
                     is closed and a load balancer's idle timeout does not cut a quiet channel
                     (set it below theirs; the system counts whole seconds)
  --proxy-protocol   each connection starts with a PROXY protocol header (v1 or v2, as
                     HAProxy's send-proxy and cloud load balancers send it): logs and P2SN_PEER
                     show the client's address from it. Only behind a proxy that always sends
                     it; a connection without a valid one is closed. With --auth, TLS
                     starts after the header (the proxy passes TLS through)
  --log-format FMT   text (default) or json: one JSON object per line
  --trace            print every frame on stderr: direction, step, length
  -q, --quiet        print nothing on stderr but errors, warnings and failed connections
  -h, --help         show this help

Examples:
  p2sn listen 7000 --echo
  p2sn listen 7000 --keep-open --exec 'tr a-z A-Z'
  p2sn listen 7000 --keep-open --auth --allow SHA256:uRfW… --exec 'sh'
  ssh server p2sn listen --stdio --exec 'sort'
  p2sn listen 7000 --host 0.0.0.0 --keep-open --echo --proxy-protocol --max-connections 5000 \\
    --idle-timeout 300000 --keepalive 60000 --log-format json

Exit codes: 0 success (drained after SIGTERM or SIGINT included), 1 failure at run time
(connections still open at the drain timeout included), 2 usage error, 3 peer key refused,
4 key file error, 130 and 143 a second SIGINT or SIGTERM (details in p2sn --help).
`,
  options: {
    host: { type: 'string' },
    key: { type: 'string' },
    'keep-open': { type: 'boolean' },
    echo: { type: 'boolean' },
    exec: { type: 'string' },
    raw: { type: 'boolean' },
    stdio: { type: 'boolean' },
    'pem-server-key': { type: 'boolean' },
    trace: { type: 'boolean' },
    workers: { type: 'string' },
    auth: { type: 'boolean' },
    allow: { type: 'string', multiple: true },
    'max-connections': { type: 'string' },
    'handshake-timeout': { type: 'string' },
    'idle-timeout': { type: 'string' },
    'drain-timeout': { type: 'string' },
    keepalive: { type: 'string' },
    'proxy-protocol': { type: 'boolean' },
    'log-format': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' }
  },
  async run (args) {
    const settings = await readSettings(args)
    const pool = settings.workers === undefined ? undefined : new RsaPool({ workers: settings.workers })
    try {
      return args.flag('stdio') ? await serveStdio(settings, pool) : await serveTcp(settings, pool)
    } finally {
      await pool?.close()
    }
  }
}

async function readSettings (args: ParsedArgs): Promise<ListenSettings> {
  const stdio = args.flag('stdio')
  const echoMode = args.flag('echo')
  const command = args.string('exec')
  const keepOpen = args.flag('keep-open')
  const host = args.string('host')
  const workersText = args.string('workers')
  const workers = workersText === undefined ? undefined : parseWorkers(workersText)
  if (echoMode && command !== undefined) throw new UsageError('choose one of --echo and --exec')
  checkExecCommand(command)
  const auth = args.flag('auth')
  const allow = new Set(args.strings('allow').map((text) => parseFingerprint(text, '--allow')))
  if (allow.size > 0 && !auth) {
    throw new UsageError('--allow needs --auth: without it a fingerprint is only what a client claims, and anyone who knows a public key can claim it')
  }
  if (host !== undefined && host.trim() === '') throw new UsageError('--host needs an address')
  const number = <T>(name: string, parse: (text: string) => T): T | undefined => {
    const text = args.string(name)
    return text === undefined ? undefined : parse(text)
  }
  const maxConnections = number('max-connections', parseConnections)
  const handshakeTimeout = number('handshake-timeout', (text) => parseMilliseconds(text, '--handshake-timeout', 0, 'for no limit'))
  const idleTimeout = number('idle-timeout', (text) => parseMilliseconds(text, '--idle-timeout', 0, 'for never'))
  const drainTimeout = number('drain-timeout', (text) => parseMilliseconds(text, '--drain-timeout', 0, 'to close connections at once'))
  const keepAlive = number('keepalive', (text) => parseMilliseconds(text, '--keepalive', 1))
  const proxyProtocol = args.flag('proxy-protocol')
  const logFormat = parseLogFormat(args.string('log-format'))
  let port = 0
  if (stdio) {
    expectNoPositionalsWithStdio(args, 'PORT')
    if (keepOpen) throw new UsageError('--keep-open does not go with --stdio, which carries one connection')
    if (host !== undefined) throw new UsageError('--host does not go with --stdio')
    for (const flag of ['max-connections', 'keepalive', 'log-format']) {
      if (args.string(flag) !== undefined) throw new UsageError(`--${flag} does not go with --stdio, which carries one connection and no TCP`)
    }
    if (proxyProtocol) throw new UsageError('--proxy-protocol does not go with --stdio, which carries no TCP')
    checkStdioUse(echoMode || command !== undefined, '--echo or --exec CMD')
  } else {
    const [portText] = expectPositionals(args, ['PORT'])
    port = parsePort(portText!, true)
  }
  setQuiet(args.flag('quiet'))
  if (command !== undefined && !auth) warnUnauthenticatedExec('client')
  return {
    port,
    host: host ?? '127.0.0.1',
    keyPair: await loadKeyPair(args.string('key')),
    keepOpen,
    echo: echoMode,
    command,
    framing: args.flag('raw') ? 'raw' : 'lines',
    serverKeyEncoding: args.flag('pem-server-key') ? 'pem' : 'base64',
    trace: args.flag('trace'),
    workers,
    auth,
    allow,
    maxConnections: maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    handshakeTimeout: handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
    idleTimeout: idleTimeout ?? 0,
    drainTimeout: drainTimeout ?? DEFAULT_DRAIN_TIMEOUT,
    keepAlive,
    proxyProtocol,
    log: new ConnectionLog(logFormat, args.flag('quiet'))
  }
}

function channelOptions (settings: ListenSettings, trace: ((event: TraceEvent) => void) | undefined, pool: RsaPool | undefined): WrapOptions {
  return {
    role: 'server',
    keyPair: settings.keyPair,
    serverKeyEncoding: settings.serverKeyEncoding,
    trace,
    handshakeTimeout: settings.handshakeTimeout,
    idleTimeout: settings.idleTimeout,
    pool,
    authenticate: settings.auth,
    verifyPeer: settings.allow.size === 0 ? undefined : (peer) => allowed(settings.allow, peer)
  }
}

/** `--allow`: the client's proven key (--allow needs --auth; checked again all the same) must be one of those listed. */
function allowed (allow: ReadonlySet<string>, peer: PeerInfo): boolean {
  if (!peer.authenticated || !allow.has(peer.fingerprint)) {
    throw new Error('its key is not one given with --allow')
  }
  return true
}

async function serveTcp (settings: ListenSettings, pool: RsaPool | undefined): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true })
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(settings.port, settings.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    throw new CliError(`cannot listen on ${peerTarget(settings.host, settings.port)}: ${systemReason(err, (e) => describeError(e).message)}`, EXIT.failure, { cause: err })
  }
  server.on('error', (err) => { printError(`the listening socket failed: ${describeError(err).message}`) })
  const address = server.address() as net.AddressInfo
  const log = settings.log
  log.listening(address.address, address.port, settings.keyPair.publicKey.fingerprint)
  const relayingStdio = settings.keepOpen && !settings.echo && settings.command === undefined
  const broadcast = relayingStdio ? new Broadcast(processEndpoint(), settings.framing) : undefined

  return await new Promise<number>((resolve) => {
    /** Every accepted socket until it closes. */
    const live = new Set<net.Socket>()
    /** Every channel until it closes. */
    const channels = new Set<Channel>()
    /** Channels whose handshake is under way, oldest first. */
    const handshaking = new Set<Channel>()
    /** Connections still sending their PROXY header, oldest first, with what drops each. */
    const preludes = new Map<net.Socket, () => void>()
    /** Served channels, with what drains each. */
    const sessions = new Set<DrainHandle>()
    /** Why we closed a connection ourselves, for its log line. */
    const closedBy = new WeakMap<Channel, string>()
    let taken = false
    let draining = false
    let forced = false
    let deadline: NodeJS.Timeout | undefined
    let finished = false

    const finish = (code: number): void => {
      if (finished) return
      finished = true
      clearTimeout(deadline)
      onFirstSignal(undefined)
      resolve(code)
    }
    /** Once draining: done when nothing is open any more. */
    const checkDrained = (): void => {
      if (draining && !server.listening && live.size === 0 && sessions.size === 0) finish(forced ? EXIT.failure : EXIT.ok)
    }
    const stopAccepting = (): void => {
      if (server.listening) server.close()
      for (const drop of preludes.values()) drop()
      for (const other of handshaking) {
        closedBy.set(other, draining ? 'dropped during its handshake: the listener is draining' : 'dropped during its handshake: the listener serves one client')
        other.destroy()
      }
    }

    onFirstSignal((signal) => {
      draining = true
      const open = sessions.size
      log.drain(`${signal}: draining ${open} connection${open === 1 ? '' : 's'} (at most ${settings.drainTimeout} ms); send it again to stop at once`, open)
      stopAccepting()
      for (const session of sessions) session.drain()
      broadcast?.drain()
      deadline = setTimeout(() => {
        forced = true
        const left = live.size
        printError(`the drain timeout (${settings.drainTimeout} ms) ran out: closing the ${left} connection${left === 1 ? '' : 's'} still open`)
        for (const channel of channels) {
          closedBy.set(channel, 'destroyed at the drain timeout')
          channel.destroy()
        }
        for (const socket of live) socket.destroy()
        // The deadline ends the process whatever an --exec child does: it and what it started
        // are signalled, and one that holds its pipes open does not keep p2sn waiting.
        killChildren('SIGTERM')
        setTimeout(() => { process.exit(EXIT.failure) }, FORCED_EXIT_GRACE).unref()
      }, settings.drainTimeout)
      checkDrained()
    })

    /**
     * Serves a connection; with a PROXY header, `remote` is the client's address, `skipped` the
     * header's length, and `handshakeTimeout` what the header left of the timeout.
     */
    const open = (socket: net.Socket, remote: { address?: string | undefined, port?: number | undefined } | undefined, skipped: number, accepted: number, handshakeTimeout = settings.handshakeTimeout): void => {
      const connection = log.connection(remote?.address ?? socket.remoteAddress, remote?.port ?? socket.remotePort, accepted)
      const label = connectionLabel(connection.address, connection.port)
      /** Frames received before the handshake was done, by step. */
      const before: string[] = []
      let handshaken = false
      const printTrace = settings.trace ? frameTracer(label) : undefined
      const trace = (event: TraceEvent): void => {
        if (event.step === 'message') {
          if (event.direction === 'in') connection.messagesIn++
          else connection.messagesOut++
        } else if (event.direction === 'in' && !handshaken) {
          before.push(event.step)
        }
        printTrace?.(event)
      }
      const watched = watchChannel(wrap(socket, { ...channelOptions(settings, trace, pool), handshakeTimeout }))
      const channel = watched.channel
      channels.add(channel)
      void watched.closed.then(forget, forget)
      function forget (): void { channels.delete(channel) }
      handshaking.add(channel)
      watched.handshake.then((peer) => {
        handshaken = true
        handshaking.delete(channel)
        if (taken || draining) {
          closedBy.set(channel, 'dropped after its handshake: the listener serves one client')
          channel.destroy()
          return
        }
        log.handshake(connection, peer.fingerprint)
        if (!settings.keepOpen) {
          // One client: stop accepting, and drop the others still shaking hands.
          taken = true
          stopAccepting()
        }
        const drain = new DrainHandle()
        sessions.add(drain)
        const done = (reason: string, code: string | undefined, exitCode: number): void => {
          log.closed(connection, closedBy.get(channel) ?? reason, code)
          sessions.delete(drain)
          if (!settings.keepOpen) finish(forced ? EXIT.failure : exitCode)
          checkDrained()
        }
        serveChannel(watched, peer, label, settings, broadcast, drain).then(
          () => { done(drain.requested ? 'drained' : 'ended', undefined, EXIT.ok) },
          (err: unknown) => {
            const { message, exitCode } = describeError(err)
            done(message, errorCode(err), exitCode)
          })
      }, (err: unknown) => {
        handshaking.delete(channel)
        const ours = closedBy.get(channel)
        if (ours !== undefined) {
          log.closed(connection, ours)
          return
        }
        const code = errorCode(err)
        const timedOut = code === 'ERR_P2SN_HANDSHAKE_TIMEOUT'
        const bytes = socket.bytesRead - skipped
        // A probe (a TCP check, nc -z) that left without a byte: nothing to say. A health
        // check that asked for the key (step 1), read it and left: nothing either (there is
        // no verbose mode to show it in).
        if (!timedOut && (bytes === 0 || (before.length === 1 && before[0] === 'PUBKEY' && bytes <= PUBKEY_REQUEST_BYTES))) return
        log.closed(connection, `handshake failed: ${describeError(err).message}`, code)
      })
    }

    server.on('connection', (socket: net.Socket) => {
      // Read now: a socket destroyed (refused, or a bad header) no longer has them.
      const { remoteAddress, remotePort } = socket
      const accepted = Date.now()
      live.add(socket)
      socket.once('close', () => {
        live.delete(socket)
        checkDrained()
      })
      if (taken || draining) {
        socket.destroy()
        return
      }
      socket.on('error', () => {})
      if (live.size > settings.maxConnections) {
        socket.destroy()
        log.refused(remoteAddress, remotePort, `${settings.maxConnections} connections are open (--max-connections)`, 'ERR_P2SN_SERVER_BUSY')
        return
      }
      socket.setNoDelay(true)
      if (settings.keepAlive !== undefined) socket.setKeepAlive(true, settings.keepAlive)
      // The library server's flood rule: a new connection beyond the limit drops the oldest
      // handshake still under way (a connection still sending its PROXY header first), so
      // silent connections cannot hold the port.
      if (handshaking.size + preludes.size >= DEFAULT_MAX_PENDING_HANDSHAKES) {
        const drop = preludes.values().next().value
        if (drop !== undefined) {
          drop()
        } else {
          const oldest = handshaking.values().next().value!
          handshaking.delete(oldest)
          closedBy.set(oldest, `dropped during its handshake: ${DEFAULT_MAX_PENDING_HANDSHAKES} handshakes were under way`)
          oldest.destroy()
        }
      }
      if (!settings.proxyProtocol) {
        open(socket, undefined, 0, accepted)
        return
      }
      preludes.set(socket, readProxyHeader(socket, settings.handshakeTimeout, '--handshake-timeout', (header) => {
        preludes.delete(socket)
        // The header and the handshake share one timeout: the channel gets what is left.
        const timeout = settings.handshakeTimeout
        const left = timeout > 0 ? Math.max(1, timeout - (Date.now() - accepted)) : timeout
        open(socket, { address: header.sourceAddress, port: header.sourcePort }, header.length, accepted, left)
      }, (err) => {
        preludes.delete(socket)
        // A probe that connected and left without a byte is no failure worth telling.
        if (socket.bytesRead === 0 || err === undefined) return
        const connection = log.connection(remoteAddress, remotePort, accepted)
        log.closed(connection, `no valid proxy protocol header: ${describeError(err).message}`, errorCode(err))
      }))
    })
  })
}

/** The bytes of step 1, `P2SN:PUBKEY` and its line end, at most: a health check sends no more. */
const PUBKEY_REQUEST_BYTES = 'P2SN:PUBKEY\r\n'.length

/** The code of an error (`ERR_P2SN_…`, `ECONNRESET`), on it or along its causes. */
function errorCode (err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code
    if (typeof code === 'string') return code
  }
  return undefined
}

async function serveStdio (settings: ListenSettings, pool: RsaPool | undefined): Promise<number> {
  const stdio = new StdioDuplex()
  const watched = watchChannel(wrap(stdio.duplex, channelOptions(settings, settings.trace ? frameTracer() : undefined, pool)))
  // SIGTERM or SIGINT: drain the one channel, as a TCP listener drains each.
  const drain = new DrainHandle()
  let deadline: NodeJS.Timeout | undefined
  onFirstSignal(() => {
    drain.drain()
    deadline = setTimeout(() => {
      watched.channel.destroy(new CliError(`the drain timeout (${settings.drainTimeout} ms) ran out: closing the connection`))
    }, settings.drainTimeout)
  })
  try {
    let peer: PeerInfo
    try {
      peer = await watched.handshake
    } catch (err) {
      throw failure('handshake failed', err)
    }
    note(`the client on stdio connected with key ${peer.fingerprint}`)
    await serveChannel(watched, peer, 'stdio', settings, undefined, drain)
    await stdio.flushed()
  } finally {
    clearTimeout(deadline)
    onFirstSignal(undefined)
  }
  return EXIT.ok
}

/** Serves one channel after its handshake, the way the settings say; `drain` drains it (SIGTERM, SIGINT). */
async function serveChannel (watched: WatchedChannel, peer: PeerInfo, label: string, settings: ListenSettings, broadcast: Broadcast | undefined, drain: DrainHandle): Promise<void> {
  if (settings.echo) {
    await echo(watched, drain)
    return
  }
  if (settings.command !== undefined) {
    const endpoint = execEndpoint(settings.command, peerEnvironment(label, peer))
    await relay(watched, endpoint, { framing: settings.framing }, drain)
    return
  }
  if (broadcast !== undefined) {
    // Drained as a whole: stdin stops and every channel ends (see Broadcast.drain).
    await broadcast.add(watched)
    return
  }
  await relay(watched, processEndpoint(), { framing: settings.framing }, drain)
}
