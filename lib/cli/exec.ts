/**
 * `--exec CMD`: a child process, run by the shell, as a session's endpoint. Its stdout is what
 * is sent; what is received goes to its stdin; its stderr is p2sn's.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import type { PeerInfo } from '../index.js'
import { CliError, errorMessage, systemReason } from './cli-error.js'
import type { Endpoint } from './endpoint.js'
import { warn } from './log.js'

const children = new Set<ChildProcess>()

/**
 * Runs `command` with the shell and returns it as an endpoint. `env` is added to the child's
 * environment (such as `P2SN_PEER_FINGERPRINT`).
 */
export function execEndpoint (command: string, env: Record<string, string>): Endpoint {
  // A process group of its own, so that a stop reaches what the shell started too, not only the
  // shell (which would leave its children running after p2sn has gone).
  const child = spawn(command, { shell: true, detached: true, stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  children.add(child)
  child.once('exit', () => children.delete(child))
  child.once('error', (err) => {
    children.delete(child)
    child.stdout!.destroy(new CliError(`cannot run '${command}': ${systemReason(err, errorMessage)}`, undefined, { cause: err }))
  })
  return {
    input: child.stdout!,
    output: child.stdin!,
    ownsOutput: true,
    interactive: false,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) signalGroup(child, 'SIGTERM')
    }
  }
}

/**
 * What an `--exec` child learns of its peer: `P2SN_PEER` (`label`, its address),
 * `P2SN_PEER_FINGERPRINT`, and `P2SN_PEER_AUTHENTICATED`, `1` when the peer proved that key
 * (`--auth`) and `0` when it only claimed it.
 */
export function peerEnvironment (label: string, peer: PeerInfo): Record<string, string> {
  return { P2SN_PEER: label, P2SN_PEER_FINGERPRINT: peer.fingerprint, P2SN_PEER_AUTHENTICATED: peer.authenticated ? '1' : '0' }
}

/** Says, once, that without `--auth` the `--exec` child's fingerprint is no identity. */
export function warnUnauthenticatedExec (peer: 'client' | 'server'): void {
  warn(`without --auth, P2SN_PEER_FINGERPRINT is the key the ${peer} claims, not one it proved: anyone who knows that public key can present it (P2SN_PEER_AUTHENTICATED=0); use --auth on both sides to authenticate the ${peer}`)
}

/** Sends `signal` to every child still running, and to what each started: when p2sn itself is interrupted. */
export function killChildren (signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const child of children) signalGroup(child, signal)
}

/** `signal` to `child`'s process group (it leads one: spawned detached), or to it alone if that fails. */
function signalGroup (child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid === undefined) throw new Error('no pid')
    process.kill(-child.pid, signal)
  } catch {
    child.kill(signal)
  }
}
