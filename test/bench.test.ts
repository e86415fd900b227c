/**
 * The scale benchmark's load generator (bench/scale-load.ts): its throughput figure stands on
 * it, so it must count real replies and fail on wrong ones. And the floors (bench/floor.ts),
 * which must do the RSA work they stand for.
 */
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { createServer, generateKeyPair, type Handler, type KeyPair } from '../lib/index.js'
import { handshakeFloor, roundTripFloor, type Served } from '../bench/floor.js'
import { listenLocal } from './helpers/net.js'

const LOAD = fileURLToPath(new URL('../bench/scale-load.ts', import.meta.url))

interface Run { code: number | null, stdout: string, stderr: string }

async function runAgainst (keyPair: KeyPair, handler: Handler, checkEvery: number | string): Promise<Run> {
  const server = createServer({ keyPair, handler })
  const port = await listenLocal(server)
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

  /** The lines it printed: "start", then the result. */
  function resultOf (run: Run): { replies: number, checked: number, seconds: number } {
    expect(run.code, run.stderr).to.equal(0)
    const lines = run.stdout.trim().split('\n')
    expect(lines[0]).to.equal('start')
    expect(lines).to.have.length(2)
    return JSON.parse(lines[1]!) as { replies: number, checked: number, seconds: number }
  }

  it('counts the replies of an echo server and checks the ones it decrypts', async () => {
    const result = resultOf(await runAgainst(keyPair, (message) => message, 1))
    expect(result.replies).to.be.greaterThan(0)
    // Checking every reply: the warm-up replies are checked but not counted.
    expect(result.checked).to.be.at.least(result.replies)
    expect(result.seconds).to.be.within(0.5, 5)
  })

  it('with CHECK_EVERY 8, decrypts one reply in eight', async () => {
    const result = resultOf(await runAgainst(keyPair, (message) => message, 8))
    expect(result.replies).to.be.greaterThan(16)
    // Each of the 4 connections checks its 8th, 16th, … reply, the warm-up one included.
    expect(result.checked).to.be.at.least(Math.floor(result.replies / 8) - 4)
    expect(result.checked).to.be.at.most(Math.ceil((result.replies + 4) / 8) + 4)
  })

  it('fails, rather than waits, when the server ends a connection', async () => {
    let answered = 0
    const run = await runAgainst(keyPair, (message, channel) => {
      if (++answered === 10) channel.end()
      return message
    }, 1)
    expect(run.code).to.not.equal(0)
    expect(run.stderr).to.contain('the server closed a connection')
  })

  it('refuses a CHECK_EVERY that is not a whole number of at least 1', async () => {
    const run = await runAgainst(keyPair, (message) => message, 'x')
    expect(run.code).to.not.equal(0)
    expect(run.stderr).to.contain('usage: scale-load.ts')
  })

  it('fails when a reply differs from its request', async () => {
    const run = await runAgainst(keyPair, (message) => Buffer.concat([message, Buffer.from('!')]), 1)
    expect(run.code).to.not.equal(0)
    expect(run.stderr).to.contain('a reply differs from its request')
  })
})

describe('bench/floor.ts (the floors of the round-trip and handshake benches)', function () {
  this.timeout(30_000)
  let serverKeys: KeyPair
  let clientKeys: KeyPair
  before(async () => {
    serverKeys = await generateKeyPair({ bits: 2048 })
    clientKeys = await generateKeyPair({ bits: 2048 })
  })

  /** How many RSA operations of each kind `units` of `floor`'s work made. */
  async function operationsOf (floor: Served, units: number): Promise<{ public: number, private: number }> {
    const counted = { public: 0, private: 0 }
    const { publicEncrypt, privateDecrypt } = crypto
    crypto.publicEncrypt = (...args: Parameters<typeof publicEncrypt>) => { counted.public++; return publicEncrypt(...args) }
    crypto.privateDecrypt = (...args: Parameters<typeof privateDecrypt>) => { counted.private++; return privateDecrypt(...args) }
    try {
      await floor.run(units)
    } finally {
      crypto.publicEncrypt = publicEncrypt
      crypto.privateDecrypt = privateDecrypt
      floor.close()
    }
    return counted
  }

  it('spends a handshake\'s RSA work on each handshake: two public and two private operations', async () => {
    expect(await operationsOf(await handshakeFloor(serverKeys, clientKeys), 3)).to.deep.equal({ public: 6, private: 6 })
  })

  it('spends a round trip\'s crypto on each unit: two public and two private operations', async () => {
    expect(await operationsOf(await roundTripFloor(serverKeys, Buffer.alloc(100, 1), 345), 3)).to.deep.equal({ public: 6, private: 6 })
  })
})
