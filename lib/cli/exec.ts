/**
 * `--exec CMD`: a child process, run by the shell, as a session's endpoint. Its stdout is what
 * is sent; what is received goes to its stdin; its stderr is p2sn's.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { CliError, errorMessage, systemReason } from './cli-error.js'
import type { Endpoint } from './endpoint.js'

const children = new Set<ChildProcess>()

/**
 * Runs `command` with the shell and returns it as an endpoint. `env` is added to the child's
 * environment (such as `P2SN_PEER_FINGERPRINT`).
 */
export function execEndpoint (command: string, env: Record<string, string>): Endpoint {
  const child = spawn(command, { shell: true, stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...env } })
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
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    }
  }
}

/** Sends `signal` to every child still running: when p2sn itself is interrupted. */
export function killChildren (signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const child of children) child.kill(signal)
}
