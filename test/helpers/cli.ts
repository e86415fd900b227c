/**
 * Runs the `p2sn` command as a user does, as child processes: `node --import tsx
 * lib/cli/index.ts …` from the repository root, so that it tests the sources whether or not
 * they are built. Every child is its own process group, and {@link killAll} kills the groups,
 * children of `--exec` included.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { listenLocal } from './net.js'

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** The command's entry point. */
const CLI = path.join(ROOT, 'lib', 'cli', 'index.ts')
/** How to start the command: `node --import tsx lib/cli/index.ts`. */
export const CLI_COMMAND = [process.execPath, '--import', 'tsx', CLI] as const

/** What a finished run left. */
export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: Buffer
  stderr: string
}

/** Options of {@link startCli}. */
interface StartOptions {
  /** `P2SN_HOME`: every test gets its own, so the real `~/.p2sn` is never touched. */
  home: string
  /** More environment variables. */
  env?: Record<string, string>
}

const groups = new Set<number>()

/** A running `p2sn`, with its output collected. */
class CliChild {
  readonly child: ChildProcess
  readonly done: Promise<CliResult>
  #stdout: Buffer[] = []
  #stderr = ''
  #waiters = new Set<() => void>()

  constructor (command: readonly string[], options: StartOptions) {
    this.child = spawn(command[0]!, command.slice(1), {
      cwd: ROOT,
      env: { ...process.env, ...options.env, P2SN_HOME: options.home },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true
    })
    if (this.child.pid !== undefined) groups.add(this.child.pid)
    this.child.stdin!.on('error', () => {})
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.#stdout.push(chunk)
      for (const wake of this.#waiters) wake()
    })
    this.child.stderr!.setEncoding('utf8')
    this.child.stderr!.on('data', (text: string) => {
      this.#stderr += text
      for (const wake of this.#waiters) wake()
    })
    this.done = new Promise((resolve, reject) => {
      this.child.once('error', reject)
      this.child.once('close', (code, signal) => {
        for (const wake of this.#waiters) wake()
        resolve({ code, signal, stdout: this.stdout, stderr: this.#stderr })
      })
    })
  }

  /** Everything written to stdout so far. */
  get stdout (): Buffer {
    return Buffer.concat(this.#stdout)
  }

  /** Everything written to stderr so far. */
  get stderr (): string {
    return this.#stderr
  }

  /** Writes `input` to stdin and ends it. */
  send (input: string | Buffer): this {
    this.child.stdin!.end(input)
    return this
  }

  /** Resolves with the first match of `pattern` in stderr; fails when the process ends or time runs out. */
  waitForStderr (pattern: RegExp, timeoutMs = 10_000): Promise<RegExpExecArray> {
    return this.#waitFor(() => this.#stderr, 'stderr', pattern, timeoutMs)
  }

  /** Resolves with the first match of `pattern` in stdout (as UTF-8); fails when the process ends or time runs out. */
  waitForStdout (pattern: RegExp, timeoutMs = 10_000): Promise<RegExpExecArray> {
    return this.#waitFor(() => this.stdout.toString(), 'stdout', pattern, timeoutMs)
  }

  #waitFor (text: () => string, name: string, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const match = pattern.exec(text())
        if (match !== null) {
          finish()
          resolve(match)
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          finish()
          reject(new Error(`p2sn exited (${this.child.exitCode ?? this.child.signalCode}) before printing ${pattern} on ${name}; stderr: ${this.#stderr}`))
        }
      }
      const timer = setTimeout(() => {
        finish()
        reject(new Error(`p2sn did not print ${pattern} on ${name} within ${timeoutMs} ms; stderr: ${this.#stderr}`))
      }, timeoutMs)
      const finish = (): void => {
        clearTimeout(timer)
        this.#waiters.delete(check)
      }
      this.#waiters.add(check)
      check()
    })
  }

  /** The result, or a clear failure when the process does not end within `timeoutMs`. */
  async result (timeoutMs = 15_000): Promise<CliResult> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`p2sn did not exit within ${timeoutMs} ms; stderr: ${this.#stderr}`))
      }, timeoutMs)
    })
    try {
      return await Promise.race([this.done, timeout])
    } finally {
      clearTimeout(timer)
    }
  }
}

/** Starts `p2sn args…`. */
export function startCli (args: readonly string[], options: StartOptions): CliChild {
  return new CliChild([...CLI_COMMAND, ...args], options)
}

/** Runs `p2sn args…` with `input` on stdin (empty when not given) and waits for it to exit. */
export async function runCli (args: readonly string[], options: StartOptions & { input?: string | Buffer, timeoutMs?: number }): Promise<CliResult> {
  return await startCli(args, options).send(options.input ?? '').result(options.timeoutMs)
}

/** A started `p2sn listen 0 …` with the port and key it printed. */
interface Listener {
  cli: CliChild
  port: number
  fingerprint: string
}

/** Starts `p2sn listen 0 args…` and waits for its "listening on" line. */
export async function startListener (args: readonly string[], options: StartOptions & { port?: number }): Promise<Listener> {
  const cli = startCli(['listen', String(options.port ?? 0), ...args], options)
  const match = await cli.waitForStderr(/listening on \S+:(\d+) with key (SHA256:\S+)/)
  return { cli, port: Number(match[1]), fingerprint: match[2]! }
}

/** Kills every process group started here that may still run. */
export function killAll (): void {
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
  groups.clear()
}

/** A port nothing listens on: bound to 0, then closed. */
export async function unusedPort (): Promise<number> {
  const server = net.createServer()
  const port = await listenLocal(server)
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  return port
}

/** A new directory for `P2SN_HOME` under `root`, holding `identity` as its identity when given. */
export async function makeHome (root: string, identity?: string): Promise<string> {
  const home = await fs.mkdtemp(path.join(root, 'home-'))
  if (identity !== undefined) await fs.writeFile(path.join(home, 'identity.pem'), identity, { mode: 0o600 })
  return home
}

/** Hex SHA-256. */
export function sha256 (data: Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex')
}

/** Lines of `text` without the empty one after a final newline. */
export function lines (text: string): string[] {
  const all = text.split('\n')
  if (all.at(-1) === '') all.pop()
  return all
}
