/**
 * The scale benchmark's load generator (bench/scale-load.ts): its throughput figure stands on
 * it, so it must count real replies and fail on wrong ones.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { createServer, generateKeyPair, type Handler, type KeyPair } from '../lib/index.js'

const LOAD = fileURLToPath(new URL('../bench/scale-load.ts', import.meta.url))

interface Run { code: number | null, stdout: string, stderr: string }

async function runAgainst (keyPair: KeyPair, handler: Handler, checkEvery: number): Promise<Run> {
  const server = createServer({ keyPair, handler })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', LOAD, String(port), '4', '0.5', String(checkEvery)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const [code] = await once(child, 'exit') as [number | null]
    return { code, stdout, stderr }
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
}

describe('bench/scale-load.ts (the throughput bench\'s load generator)', function () {
  this.timeout(60_000)
  let keyPair: KeyPair
  before(async () => { keyPair = await generateKeyPair({ bits: 2048 }) })

  it('counts the replies of an echo server and checks the ones it decrypts', async () => {
    const run = await runAgainst(keyPair, (message) => message, 1)
    expect(run.code, run.stderr).to.equal(0)
    const result = JSON.parse(run.stdout) as { replies: number, checked: number }
    expect(result.replies).to.be.greaterThan(0)
    // Checking every reply: the warm-up replies are checked but not counted.
    expect(result.checked).to.be.at.least(result.replies)
  })

  it('fails when a reply differs from its request', async () => {
    const run = await runAgainst(keyPair, (message) => Buffer.concat([message, Buffer.from('!')]), 1)
    expect(run.code).to.not.equal(0)
    expect(run.stderr).to.contain('a reply differs from its request')
  })
})
