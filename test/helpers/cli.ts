/**
 * Runs the `p2sn` command as a user does, as child processes: the built `dist/cli/index.js`
 * from the repository root. Built JavaScript starts in about a third of the CPU time that
 * `node --import tsx lib/cli/index.ts` takes, and a busy two-core machine cannot spare that
 * for dozens of processes. {@link assertBuilt} and every start therefore fail at once, saying to
 * run `npm run build`, when the build is missing or older than `lib/` (`npm test` builds first),
 * rather than testing stale code; test files that do not start the command still run.
 *
 * {@link runCli} runs at most {@link CLI_PARALLELISM} commands at once and queues the rest, so
 * no test can start thirty processes together; its time limit counts from the process start,
 * not from the queueing. Every child is its own process group, and {@link killAll} kills the
 * groups, children of `--exec` included. {@link useCliRoot} registers the hooks that each test
 * file of the command shares.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export { unusedPort } from './net.js'

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** The command's entry point, as `npm run build` makes it. */
const CLI = path.join(ROOT, 'dist', 'cli', 'index.js')
/** How to start the command: `node dist/cli/index.js`. */
export const CLI_COMMAND = [process.execPath, CLI] as const

/**
 * How many commands {@link runCli} runs at once: one per core, at most four. Each is a Node
 * process that spends its first few hundred milliseconds of CPU loading modules.
 */
export const CLI_PARALLELISM = Math.min(4, os.availableParallelism())

/**
 * The default time limit of one command, from its start to its exit, and of each wait for its
 * output. Commands take well under a second alone; this leaves room for a loaded machine.
 */
export const CLI_TIMEOUT_MS = 20_000

/**
 * A mocha time limit for a hook or test that waits for `runs` commands started through
 * {@link runCli} at once: they run {@link CLI_PARALLELISM} at a time, each within `perRunMs`
 * of its own start, so this grows with the rounds. It is only a backstop behind theirs.
 */
export function cliBatchTimeout (runs: number, perRunMs = CLI_TIMEOUT_MS): number {
  return (Math.ceil(runs / CLI_PARALLELISM) + 1) * perRunMs
}

/** Why the built command is not to be tested (missing, or older than a file under `lib/`), or null. */
function staleBuild (): string | null {
  const advice = 'run `npm run build` first (the CLI tests run the built command)'
  const built = fs.statSync(CLI, { throwIfNoEntry: false })
  if (built === undefined) return `${path.relative(ROOT, CLI)} is missing: ${advice}`
  const lib = path.join(ROOT, 'lib')
  for (const name of fs.readdirSync(lib, { recursive: true, encoding: 'utf8' })) {
    const source = fs.statSync(path.join(lib, name))
    if (source.isFile() && source.mtimeMs > built.mtimeMs) return `${path.relative(ROOT, CLI)} is older than lib/${name}: ${advice}`
  }
  return null
}

/** {@link staleBuild}, looked at once. */
let buildProblem: string | null | undefined

/**
 * Throws, saying to run `npm run build`, when the built command is missing or older than a file
 * under `lib/`. Every start checks this; a test file calls it in its first `before` hook too, so
 * that a stale build is one failure rather than one per test.
 */
export function assertBuilt (): void {
  if (buildProblem === undefined) buildProblem = staleBuild()
  if (buildProblem !== null) throw new Error(buildProblem)
}

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

/** Kills the process group led by `pid`, if it still runs. */
function killGroup (pid: number): void {
  groups.delete(pid)
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // Already gone.
  }
}

/**
 * The slots of {@link CLI_PARALLELISM} concurrent runs. A run holds one from before its spawn
 * to its exit; a waiting run takes the slot that an exit frees.
 */
const slots = {
  free: CLI_PARALLELISM,
  waiting: [] as Array<{ resolve: () => void, reject: (error: Error) => void }>,

  async take (): Promise<void> {
    if (this.free > 0) {
      this.free--
      return
    }
    await new Promise<void>((resolve, reject) => { this.waiting.push({ resolve, reject }) })
  },

  give (): void {
    const next = this.waiting.shift()
    if (next === undefined) this.free++
    else next.resolve()
  },

  /** Fails the runs still waiting: {@link killAll} ends a test, and they belong to it. */
  cancel (): void {
    for (const { reject } of this.waiting.splice(0)) reject(new Error('p2sn was not started: killAll() ended the test'))
  }
}

/** A running `p2sn`, with its output collected. */
export class CliChild {
  readonly child: ChildProcess
  readonly done: Promise<CliResult>
  #stdout: Buffer[] = []
  #stderr = ''
  #waiters = new Set<() => void>()

  constructor (command: readonly string[], options: StartOptions) {
    assertBuilt()
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
  waitForStderr (pattern: RegExp, timeoutMs = CLI_TIMEOUT_MS): Promise<RegExpExecArray> {
    return this.#waitFor(() => this.#stderr, 'stderr', pattern, timeoutMs)
  }

  /** Resolves with the first match of `pattern` in stdout (as UTF-8); fails when the process ends or time runs out. */
  waitForStdout (pattern: RegExp, timeoutMs = CLI_TIMEOUT_MS): Promise<RegExpExecArray> {
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

  /**
   * The result, or a clear failure when the process does not end within `timeoutMs`; it is then
   * killed, so that a run stuck in a batch frees its slot for the next.
   */
  async result (timeoutMs = CLI_TIMEOUT_MS): Promise<CliResult> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        if (this.child.pid !== undefined) killGroup(this.child.pid)
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

/**
 * Starts `p2sn args…` at once, outside the slots of {@link runCli}: the test drives this process
 * (a listener waiting for its clients, two ends piped together), so it must never wait in a
 * queue behind the runs that it serves.
 */
export function startCli (args: readonly string[], options: StartOptions): CliChild {
  return new CliChild([...CLI_COMMAND, ...args], options)
}

/**
 * Starts `sh -c script` like {@link startCli}, for commands joined by hand in a shell (with
 * {@link CLI_COMMAND}); {@link killAll} kills it and its children.
 */
export function startShell (script: string, options: StartOptions): CliChild {
  return new CliChild(['sh', '-c', script], options)
}

/**
 * Runs `p2sn args…` with `input` on stdin (empty when not given) and waits for it to exit, within
 * `timeoutMs` of its start. It first waits for one of the {@link CLI_PARALLELISM} slots, so that
 * `Promise.all` over many runs is safe.
 */
export async function runCli (args: readonly string[], options: StartOptions & { input?: string | Buffer, timeoutMs?: number }): Promise<CliResult> {
  await slots.take()
  let cli: CliChild
  try {
    cli = startCli(args, options)
  } catch (error) {
    slots.give()
    throw error
  }
  const release = (): void => { slots.give() }
  cli.done.then(release, release)
  return await cli.send(options.input ?? '').result(options.timeoutMs)
}

/** A started `p2sn listen 0 …` with the port and key it printed. */
interface Listener {
  cli: CliChild
  port: number
  fingerprint: string
}

/** Starts `p2sn listen 0 args…` and waits for its "listening on" line (or JSON object, with `--log-format json`). */
export async function startListener (args: readonly string[], options: StartOptions & { port?: number }): Promise<Listener> {
  const cli = startCli(['listen', String(options.port ?? 0), ...args], options)
  const match = await cli.waitForStderr(/listening on \S+:(\d+) with key (SHA256:\S+)|"event":"listening","address":"[^"]*","port":(\d+),"fingerprint":"(SHA256:[^"]+)"/)
  return { cli, port: Number(match[1] ?? match[3]), fingerprint: (match[2] ?? match[4])! }
}

/** Kills every process group started here that may still run, and fails the runs still queued. */
export function killAll (): void {
  slots.cancel()
  for (const pid of groups) killGroup(pid)
}

/**
 * The set-up that every test file of the command shares, registered in the calling `describe`
 * (pass its `this`): a time limit for a few commands in a row, one failure and no test run when
 * the build is missing or stale ({@link assertBuilt}), a temporary directory named from `prefix`
 * for the tests' homes and files, every process killed after each test ({@link killAll}), and
 * the directory removed after the last. Returns a getter of the directory, which exists from the
 * file's next `before` hook on.
 */
export function useCliRoot (suite: Mocha.Suite, prefix: string): () => string {
  // Room for a few commands one after another on a loaded machine; each has its own limit too.
  suite.timeout(3 * CLI_TIMEOUT_MS)
  let root: string | undefined
  // A missing or stale build: one failure here, and no test runs.
  before(assertBuilt)
  before(async () => { root = await fs.promises.mkdtemp(path.join(os.tmpdir(), prefix)) })
  afterEach(() => { killAll() })
  after(async () => {
    killAll()
    // Not made when assertBuilt failed.
    if (root !== undefined) await fs.promises.rm(root, { recursive: true, force: true })
  })
  return () => {
    if (root === undefined) throw new Error('the temporary directory of the CLI tests is made in a before hook: ask for it in a test or a later hook')
    return root
  }
}

/** A new directory for `P2SN_HOME` under `root`, holding `identity` as its identity when given. */
export async function makeHome (root: string, identity?: string): Promise<string> {
  const home = await fs.promises.mkdtemp(path.join(root, 'home-'))
  if (identity !== undefined) await fs.promises.writeFile(path.join(home, 'identity.pem'), identity, { mode: 0o600 })
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
