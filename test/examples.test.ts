// Runs every example as a user would (node with the TypeScript loader) and checks its output.
import { execFile } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { unusedPort } from './helpers/net.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

async function example (name: string, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', `examples/${name}.ts`], {
    cwd: root, timeout: 30_000, env: { ...process.env, ...env }
  })
  return stdout
}

describe('examples', function () {
  this.timeout(40_000)

  it('tcp-echo.ts: three requests answered over loopback TCP', async () => {
    const out = await example('tcp-echo')
    expect(out).to.match(/^server key: SHA256:[A-Za-z0-9+/]{43}$/m)
    expect(out).to.include('reply: hello\nreply: wörld\nreply: 1000 bytes\n')
  })

  it('tls.ts: a request inside TLS', async () => {
    expect(await example('tls')).to.equal('tls echo: hello over tls\n')
  })

  it('authenticated.ts: alice admitted and proven, mallory refused', async () => {
    expect(await example('authenticated')).to.equal('alice: server proven: true\nalice: hello, alice\nserver refused a client: ERR_P2SN_PEER_REJECTED\nmallory: ERR_P2SN_CLOSED\n')
  })

  it('child-process.ts: a child speaking P2SN on its stdio', async () => {
    expect(await example('child-process')).to.equal('child PID got: ping\nchild PID got: pong\nchild exited with 0\n')
  })

  it('pipeline.ts: the four layers composed by hand', async () => {
    expect(await example('pipeline')).to.equal('opened: first secret\nopened: second secret\nopened: 600 bytes\n')
  })

  it('hand-composed.ts: a client composed by hand, with a layer of its own, against createServer()', async () => {
    const out = await example('hand-composed')
    expect(out).to.match(/^server key: SHA256:[A-Za-z0-9+/]{43}\n/)
    expect(out.slice(out.indexOf('\n') + 1)).to.equal('reply: echo: hello\nreply: echo: wörld\nreply: 606 bytes\n3 replies counted, then the server\'s end\n')
  })

  it('cluster.ts: one server key served by every worker process', async () => {
    const out = await example('cluster', { PORT: String(await unusedPort()), WORKERS: '2' })
    expect(out).to.equal('4 connections, answered by 2 worker processes, 1 server key\n')
  })

  it('the README\'s ten-line example runs as printed (on a free port)', async () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
    const section = readme.slice(readme.indexOf('## In ten lines'))
    const code = section.slice(section.indexOf('```ts') + 5, section.indexOf('```', section.indexOf('```ts') + 5))
    expect(code.split('\n').filter((line) => line.trim() !== '').length).to.be.at.most(10)
    // Inside the project, so that 'p2sn' resolves to this package.
    const file = new URL('../examples/_readme-example.ts', import.meta.url)
    writeFileSync(file, code.replaceAll('7000', String(await unusedPort())))
    try {
      const out = await example('_readme-example')
      expect(out).to.match(/^server proved SHA256:[A-Za-z0-9+/]{43}\nyou said hello\n$/)
    } finally {
      rmSync(file)
    }
  })

  it('demo.ts (npm start): shows the six handshake steps and two round trips', async () => {
    const out = await example('demo')
    const steps = [...out.matchAll(/^\s+\d+ {2}(client → server|server → client) {2}(\S+(?: key)?)/gm)].map((m) => `${m[1]} ${m[2]}`)
    expect(steps).to.deep.equal([
      'client → server PUBKEY', 'server → client server key', 'client → server KEYCHECK',
      'server → client PUBKEY', 'client → server client key', 'server → client KEYCHECK',
      'client → server message', 'server → client message', 'client → server message', 'server → client message'
    ])
    expect(out).to.include('got reply "Hello, Ada!"')
    expect(out).to.match(/handshake complete: the server presented SHA256:\S+, a claim \(authenticated: false\)/)
    expect(out).to.match(/the server proved SHA256:\S+ in TLS 1\.3 \(authenticated: true\)/)
    expect(out).to.include('got reply "Hello, Alan!"')
    expect(out).to.include('npx p2sn listen 7000 --echo')
  })
})
