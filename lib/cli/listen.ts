/**
 * `p2sn listen`: accepts P2SN connections (or one over `--stdio`) and serves them by relaying
 * stdio, by echoing, or through a child process per connection.
 * @module
 */
import net from 'node:net'
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_HANDSHAKES, RsaPool, wrap, type Channel, type KeyPair, type PeerInfo, type WrapOptions } from '../index.js'
import { checkExecCommand, expectNoPositionalsWithStdio, expectPositionals, parseFingerprint, parsePort, parseWorkers, type ParsedArgs } from './args.js'
import { Broadcast } from './broadcast.js'
import { CliError, UsageError, describeError, failure, systemReason } from './cli-error.js'
import type { Command } from './command.js'
import { echo } from './echo.js'
import { processEndpoint } from './endpoint.js'
import { execEndpoint, peerEnvironment, warnUnauthenticatedExec } from './exec.js'
import { EXIT } from './exit-codes.js'
import { loadKeyPair } from './identity.js'
import { peerTarget } from './known-peers.js'
import type { Framing } from './line-io.js'
import { note, printError, setQuiet } from './log.js'
import { relay } from './relay.js'
import { StdioDuplex, checkStdioUse } from './stdio-duplex.js'
import { frameTracer } from './trace.js'
import { watchChannel, type WatchedChannel } from './watched-channel.js'

const usage = `p2sn listen PORT [--host 127.0.0.1] [--key FILE] [--keep-open] [--echo | --exec CMD] [--raw] [--workers N]
                   [--auth [--allow SHA256:…]...]
       p2sn listen --stdio (--echo | --exec CMD) [--key FILE] [--raw] [--workers N] [--auth [--allow SHA256:…]...]`

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
  --trace            print every frame on stderr: direction, step, length
  -q, --quiet        print nothing on stderr but errors and warnings
  -h, --help         show this help

Examples:
  p2sn listen 7000 --echo
  p2sn listen 7000 --keep-open --exec 'tr a-z A-Z'
  p2sn listen 7000 --keep-open --auth --allow SHA256:uRfW… --exec 'sh'
  ssh server p2sn listen --stdio --exec 'sort'

Exit codes: 0 success, 1 failure at run time, 2 usage error, 3 peer key refused,
4 key file error (details in p2sn --help).
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
  let port = 0
  if (stdio) {
    expectNoPositionalsWithStdio(args, 'PORT')
    if (keepOpen) throw new UsageError('--keep-open does not go with --stdio, which carries one connection')
    if (host !== undefined) throw new UsageError('--host does not go with --stdio')
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
    allow
  }
}

function channelOptions (settings: ListenSettings, label: string | undefined, pool: RsaPool | undefined): WrapOptions {
  return {
    role: 'server',
    keyPair: settings.keyPair,
    serverKeyEncoding: settings.serverKeyEncoding,
    trace: settings.trace ? frameTracer(label) : undefined,
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
  server.maxConnections = DEFAULT_MAX_CONNECTIONS
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
  note(`listening on ${peerTarget(address.address, address.port)} with key ${settings.keyPair.publicKey.fingerprint}`)
  const relayingStdio = settings.keepOpen && !settings.echo && settings.command === undefined
  const broadcast = relayingStdio ? new Broadcast(processEndpoint(), settings.framing) : undefined

  return await new Promise<number>((resolve) => {
    const handshaking = new Set<Channel>()
    let taken = false
    server.on('connection', (socket: net.Socket) => {
      if (taken) {
        socket.destroy()
        return
      }
      // The library server's flood rule: a new connection beyond the limit drops the oldest
      // handshake still under way, so silent connections cannot hold the port.
      if (handshaking.size >= DEFAULT_MAX_PENDING_HANDSHAKES) {
        const oldest = handshaking.values().next().value!
        handshaking.delete(oldest)
        oldest.destroy()
      }
      const label = peerTarget(socket.remoteAddress ?? 'unknown', socket.remotePort ?? 0)
      const watched = watchChannel(wrap(socket, channelOptions(settings, label, pool)))
      handshaking.add(watched.channel)
      watched.handshake.then((peer) => {
        handshaking.delete(watched.channel)
        if (taken) {
          watched.channel.destroy()
          return
        }
        note(`${label} connected with key ${peer.fingerprint}`)
        if (!settings.keepOpen) {
          // One client: stop accepting, and drop the others still shaking hands.
          taken = true
          server.close()
          for (const other of handshaking) other.destroy()
        }
        serveChannel(watched, peer, label, settings, broadcast).then(
          () => { if (!settings.keepOpen) resolve(EXIT.ok) },
          (err: unknown) => {
            const { message, exitCode } = describeError(err)
            printError(`${label}: ${message}`)
            if (!settings.keepOpen) resolve(exitCode)
          })
      }, (err: unknown) => {
        handshaking.delete(watched.channel)
        if (!taken) printError(`${label}: handshake failed: ${describeError(err).message}`)
      })
    })
  })
}

async function serveStdio (settings: ListenSettings, pool: RsaPool | undefined): Promise<number> {
  const stdio = new StdioDuplex()
  const watched = watchChannel(wrap(stdio.duplex, channelOptions(settings, undefined, pool)))
  let peer: PeerInfo
  try {
    peer = await watched.handshake
  } catch (err) {
    throw failure('handshake failed', err)
  }
  note(`the client on stdio connected with key ${peer.fingerprint}`)
  await serveChannel(watched, peer, 'stdio', settings, undefined)
  await stdio.flushed()
  return EXIT.ok
}

/** Serves one channel after its handshake, the way the settings say. */
async function serveChannel (watched: WatchedChannel, peer: PeerInfo, label: string, settings: ListenSettings, broadcast: Broadcast | undefined): Promise<void> {
  if (settings.echo) {
    await echo(watched)
    return
  }
  if (settings.command !== undefined) {
    const endpoint = execEndpoint(settings.command, peerEnvironment(label, peer))
    await relay(watched, endpoint, { framing: settings.framing })
    return
  }
  if (broadcast !== undefined) {
    await broadcast.add(watched)
    return
  }
  await relay(watched, processEndpoint(), { framing: settings.framing })
}
