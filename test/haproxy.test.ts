/**
 * The fleet of issue 13 behind a real HAProxy (Debian's package; `.ci/run` installs it when it
 * is missing): three p2sn servers sharing one key, each its own process with proxyProtocol
 * (test/helpers/fleet-backend.ts), behind examples/haproxy/haproxy.cfg with only its ports
 * changed. Each backend sees the clients' real addresses (PROXY v2); a rolling restart under 16
 * reconnecting clients loses no request; a frozen backend gives ERR_P2SN_REQUEST_TIMEOUT and
 * the client moves on. Skipped, with the reason in its title, where haproxy cannot be had.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { createClient, generateKeyPair, wrap, type Client, type KeyPair, type P2snError } from '../lib/index.js'
import { unusedPort } from './helpers/net.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const BACKEND = path.join(here, 'helpers', 'fleet-backend.ts')
const EXAMPLE = path.join(here, '..', 'examples', 'haproxy', 'haproxy.cfg')
const sleep = async (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** haproxy's path, or why there is none. */
function findHaproxy (): { path?: string, missing?: string } {
  const found = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' })
  const where = found.stdout.trim()
  return where === '' ? { missing: 'haproxy is not installed (Debian package haproxy; .ci/run installs it)' } : { path: where }
}

const haproxy = findHaproxy()

describe(`a fleet of three servers behind a real HAProxy${haproxy.missing === undefined ? '' : ` (skipped: ${haproxy.missing})`}`, function () {
  this.timeout(120_000)
  let dir: string
  let serverKeys: KeyPair
  let clientKeys: KeyPair
  let keyFile: string
  let frontend: number
  let backendPorts: number[]
  const backends: Array<ChildProcess | undefined> = []
  let balancer: ChildProcess | undefined
  const clients: Client[] = []
  /** What haproxy said, shown when a test fails. */
  let stderr = ''

  /** Starts backend `i` and waits for its "ready". */
  async function startBackend (i: number): Promise<void> {
    const child = spawn(process.execPath, ['--import', 'tsx', BACKEND, String(backendPorts[i]), keyFile, `p${i + 1}`], { stdio: ['ignore', 'pipe', 'inherit'] })
    backends[i] = child
    const lines = createInterface({ input: child.stdout! })
    const [line] = await Promise.race([once(lines, 'line'), once(child, 'exit').then(() => ['exited'])]) as [string]
    if (line !== 'ready') throw new Error(`backend p${i + 1} did not start: ${line}`)
  }

  /** One request over a fresh connection through HAProxy: the reply, and the socket's own port. */
  async function once_ (message: string): Promise<{ reply: string, localPort: number }> {
    const socket = net.connect({ port: frontend, host: '127.0.0.1', allowHalfOpen: true })
    const channel = wrap(socket, { role: 'client', keyPair: clientKeys })
    channel.on('error', () => {})
    try {
      const reply = (await channel.request(message, { timeout: 10_000 })).toString()
      return { reply, localPort: socket.localPort! }
    } finally {
      channel.destroy()
    }
  }

  before(async function () {
    if (haproxy.path === undefined) this.skip()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2sn-fleet-'))
    ;[serverKeys, clientKeys] = await Promise.all([generateKeyPair({ bits: 1024 }), generateKeyPair({ bits: 1024 })])
    keyFile = path.join(dir, 'key.pem')
    fs.writeFileSync(keyFile, serverKeys.privateKey.toPem())
    frontend = await unusedPort()
    backendPorts = [await unusedPort(), await unusedPort(), await unusedPort()]
    await Promise.all([0, 1, 2].map(startBackend))
    // The example's configuration, with this run's ports.
    const config = fs.readFileSync(EXAMPLE, 'utf8')
      .replace('127.0.0.1:7000', `127.0.0.1:${frontend}`)
      .replace('127.0.0.1:7001', `127.0.0.1:${backendPorts[0]}`)
      .replace('127.0.0.1:7002', `127.0.0.1:${backendPorts[1]}`)
      .replace('127.0.0.1:7003', `127.0.0.1:${backendPorts[2]}`)
    const configFile = path.join(dir, 'haproxy.cfg')
    fs.writeFileSync(configFile, config)
    balancer = spawn(haproxy.path!, ['-db', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] })
    balancer.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    // Up once a request goes through.
    const deadline = Date.now() + 15_000
    for (;;) {
      try {
        await once_('up?')
        break
      } catch (err) {
        if (Date.now() > deadline || balancer.exitCode !== null) throw new Error(`haproxy did not come up: ${(err as Error).message}\n${stderr}`)
        await sleep(200)
      }
    }
  })

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.log(stderr.split('\n').slice(-30).join('\n'))
    await Promise.all(clients.splice(0).map(async (client) => client.close()))
  })

  after(() => {
    balancer?.kill('SIGKILL')
    for (const child of backends) {
      if (child !== undefined && child.exitCode === null) {
        child.kill('SIGCONT')
        child.kill('SIGKILL')
      }
    }
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true })
  })

  it('each backend sees the client\'s own address and port, from the PROXY v2 header', async () => {
    const names = new Set<string>()
    for (let i = 0; i < 6; i++) {
      const { reply, localPort } = await once_(`hello ${i}`)
      const [name, address, message] = reply.split(' ', 3) as [string, string, string]
      names.add(name)
      expect(address).to.equal(`127.0.0.1:${localPort}`)
      expect(reply.endsWith(`hello ${i}`)).to.equal(true)
      void message
    }
    expect([...names].sort()).to.deep.equal(['p1', 'p2', 'p3'])
  })

  it('a rolling restart under 16 reconnecting clients: every request is answered, or rejected as sent', async () => {
    const counts = { answered: 0, rejectedSent: 0, other: [] as string[] }
    let running = true
    const loops = Array.from({ length: 16 }, async (_, n) => {
      const client = createClient({ host: '127.0.0.1', port: frontend, keyPair: clientKeys, requestTimeout: 10_000, reconnect: { initialDelay: 50, maxDelay: 500 } })
      clients.push(client)
      for (let i = 0; running; i++) {
        try {
          const reply = (await client.request(`c${n} r${i}`)).toString()
          if (!reply.endsWith(`c${n} r${i}`)) counts.other.push(`wrong reply ${reply}`)
          else counts.answered++
        } catch (err) {
          if ((err as P2snError).sent === true) counts.rejectedSent++
          else counts.other.push(`${(err as P2snError).code}: ${(err as Error).message}`)
        }
        await sleep(5)
      }
    })
    await sleep(500)
    for (let i = 0; i < 3; i++) {
      const child = backends[i]!
      const exited = once(child, 'exit') as Promise<[number | null, string | null]>
      child.kill('SIGTERM')
      const [code] = await exited
      expect(code, `p${i + 1} exit code after draining`).to.equal(0)
      await startBackend(i)
      // Let HAProxy see it up again before the next goes down.
      await sleep(2500)
    }
    running = false
    await Promise.all(loops)
    console.log(`      rolling restart: ${counts.answered} answered, ${counts.rejectedSent} rejected with sent === true, ${counts.other.length} otherwise`)
    expect(counts.other).to.deep.equal([])
    expect(counts.answered).to.be.above(100)
  })

  it('a frozen backend (SIGSTOP): ERR_P2SN_REQUEST_TIMEOUT, and the client moves on', async () => {
    const frozen = backends[0]!
    frozen.kill('SIGSTOP')
    try {
      const outcomes: string[] = []
      // Fresh clients, so that round robin sends some to the frozen backend.
      for (let i = 0; i < 4 && !outcomes.includes('timeout then answered'); i++) {
        const client = createClient({ host: '127.0.0.1', port: frontend, keyPair: clientKeys, requestTimeout: 1500 })
        clients.push(client)
        try {
          await client.request('first')
          outcomes.push('answered')
        } catch (err) {
          expect((err as P2snError).code).to.equal('ERR_P2SN_REQUEST_TIMEOUT')
          const reply = (await client.request('second')).toString()
          expect(reply.endsWith('second')).to.equal(true)
          expect(reply.startsWith('p1 ')).to.equal(false)
          outcomes.push('timeout then answered')
        }
      }
      expect(outcomes).to.include('timeout then answered')
    } finally {
      frozen.kill('SIGCONT')
    }
  })
})
