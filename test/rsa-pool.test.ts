import { getEventListeners, setMaxListeners } from 'node:events'
import { expect } from 'chai'
import { P2snError, RsaCipher, decryptMessage, encryptMessage, generateKeyPair, opensslEngine, parsePrivateKey, type KeyPair } from '../lib/index.js'
import { RsaPool, type PoolDecryptOptions, type RsaPoolOptions } from '../lib/rsa-pool.js'
import { decryptsTo } from '../lib/core/rsa-message.js'
import { resolveEngine } from '../lib/rsa-engine.js'
import { CIPHERTEXT_CLASSES, blocks, ciphertextOf, encodedMessage, rawEncrypt } from './helpers/ciphertext-classes.js'
import { expectP2snError, expectP2snErrorSync } from './helpers/errors.js'
import { fixtureText, loadRejectionFamilies, loadSessions, loadWycheproof } from './helpers/fixtures.js'
import { settle } from './helpers/timing.js'

/** What the inline path gives: the message, or the error code. */
function inline (keys: KeyPair, ciphertext: Buffer, rejection: 'implicit' | 'error' = 'implicit', strict = false): string {
  try {
    return decryptMessage(keys, ciphertext, { rejection, strict }).toString('hex')
  } catch (err) {
    return (err as P2snError).code
  }
}

async function pooled (pool: RsaPool, keys: KeyPair, ciphertext: Buffer, rejection: 'implicit' | 'error' = 'implicit', strict = false): Promise<string> {
  try {
    return (await pool.decrypt(keys.privateKey, ciphertext, { rejection, strict })).toString('hex')
  } catch (err) {
    expect(err).to.be.instanceOf(P2snError)
    return (err as P2snError).code
  }
}

/** Runs `test` with a pool of its own, closed after. */
async function withPool (options: RsaPoolOptions, test: (pool: RsaPool) => Promise<void>): Promise<void> {
  const pool = new RsaPool(options)
  try {
    await test(pool)
  } finally {
    await pool.close()
  }
}

/** How a decryption ended: 'decrypted', or its error code. */
async function outcomeOf (decryption: Promise<Buffer>): Promise<string> {
  return decryption.then(() => 'decrypted', (err: P2snError) => err.code)
}

/**
 * Starts decrypting a ciphertext of `count` copies of `block`, made here in memory of its own
 * and referenced by nothing of the caller's, so that only the pool can keep it alive.
 * @returns how it ends, and whether the ciphertext and its memory have been collected
 */
function decryptUnheld (pool: RsaPool, keys: KeyPair, block: Buffer, count: number, options: PoolDecryptOptions): { outcome: Promise<string>, collected: () => boolean } {
  const ciphertext = Buffer.alloc(count * block.length)
  for (let i = 0; i < count; i++) block.copy(ciphertext, i * block.length)
  const refs = [new WeakRef(ciphertext), new WeakRef(ciphertext.buffer)]
  return {
    outcome: outcomeOf(pool.decrypt(keys.privateKey, ciphertext, { ...options, maxMessageBlocks: Infinity })),
    collected: () => refs.every((ref) => ref.deref() === undefined)
  }
}

describe('RsaPool (rsa-pool.ts)', function () {
  this.timeout(60_000)
  let pool: RsaPool

  // Keys are slow to make: one 1024-bit pair for every test that needs a key, and two more,
  // distinct, for the test that needs several.
  let keys: KeyPair
  let manyKeys: KeyPair[]
  /** One block of `keys` that decrypts to 'b'. */
  let block: Buffer

  before(async () => {
    manyKeys = await Promise.all([1024, 1024, 2048].map(async (bits) => generateKeyPair({ bits })))
    keys = manyKeys[0]!
    block = encryptMessage(keys, 'b')
  })
  before(() => { pool = new RsaPool({ workers: 2 }) })
  after(async () => { await pool.close() })

  it('gives the implicit-rejection vectors\' expected messages, valid and synthetic alike', async () => {
    for (const family of loadRejectionFamilies()) {
      const keys = parsePrivateKey(family.privateKeyPem)
      const results = await Promise.all(family.cases.map(async (c) => pooled(pool, keys, Buffer.from(c.ciphertextHex, 'hex'))))
      expect(results, family.id).to.deep.equal(family.cases.map((c) => c.expectedHex))
    }
  })

  it('is byte-identical to the inline path on every 2048-bit Wycheproof test, errors included', async () => {
    const file = loadWycheproof(2048)
    for (const group of file.groups) {
      const keys = parsePrivateKey(group.privateKeyPem)
      for (const rejection of ['implicit', 'error'] as const) {
        const cts = group.tests.map((t) => Buffer.from(t.ct, 'hex'))
        const results = await Promise.all(cts.map(async (ct) => pooled(pool, keys, ct, rejection)))
        expect(results).to.deep.equal(cts.map((ct) => inline(keys, ct, rejection)))
      }
    }
  })

  it('decrypts every request and reply of the recorded Python sessions', async () => {
    for (const session of loadSessions()) {
      const server = parsePrivateKey(session.server.privateKeyPem)
      const client = parsePrivateKey(session.client.privateKeyPem)
      for (const exchange of session.exchanges) {
        if (!('requestHex' in exchange)) continue
        const request = Buffer.from(exchange.requestHex, 'hex')
        const ct = encryptMessage(server, request)
        expect(await pooled(pool, server, ct)).to.equal(exchange.requestHex)
        const reply = encryptMessage(client, Buffer.from(exchange.replyHex, 'hex'))
        expect(await pooled(pool, client, reply)).to.equal(exchange.replyHex)
      }
    }
  })

  it('keeps many keys and many concurrent decryptions apart', async () => {
    const jobs = Array.from({ length: 300 }, (_, i) => {
      const pair = manyKeys[i % manyKeys.length]!
      const message = Buffer.alloc(i % 400, i)
      return { pair, message, ct: encryptMessage(pair, message) }
    })
    const out = await Promise.all(jobs.map(async ({ pair, ct }) => pool.decrypt(pair.privateKey, ct)))
    out.forEach((message, i) => expect(message.equals(jobs[i]!.message), `job ${i}`).to.equal(true))
  })

  it('serves RsaCipher.decryptor({ pool }): messages come out in the order they went in', async () => {
    const decryptor = RsaCipher.decryptor(keys, { pool })
    const messages = Array.from({ length: 60 }, (_, i) => Buffer.alloc(i * 7, i))
    const out: Buffer[] = []
    decryptor.on('data', (message: Buffer) => out.push(message))
    for (const message of messages) decryptor.write(encryptMessage(keys, message))
    decryptor.end()
    await new Promise((resolve) => decryptor.on('end', resolve))
    expect(out.map((m) => m.toString('hex'))).to.deep.equal(messages.map((m) => m.toString('hex')))
  })

  it('refuses work beyond maxQueue with ERR_P2SN_POOL_BUSY, and work after close with ERR_P2SN_CLOSED', async () => {
    const small = new RsaPool({ workers: 1, maxQueue: 2 })
    const ct = encryptMessage(keys, 'x')
    const first = [small.decrypt(keys.privateKey, ct), small.decrypt(keys.privateKey, ct)]
    await expectP2snError(small.decrypt(keys.privateKey, ct), 'ERR_P2SN_POOL_BUSY')
    expect((await Promise.all(first)).map(String)).to.deep.equal(['x', 'x'])
    await small.close()
    await expectP2snError(small.decrypt(keys.privateKey, ct), 'ERR_P2SN_CLOSED')
  })

  it('an aborted signal drops a decryption still waiting for a worker, and frees its place in the queue', async () => {
    const small = new RsaPool({ workers: 1, maxQueue: 1 })
    try {
      const ct = encryptMessage(keys, 'x')
      const controller = new AbortController()
      const dropped = small.decrypt(keys.privateKey, ct, { signal: controller.signal })
      controller.abort()
      await expectP2snError(dropped, 'ERR_P2SN_CLOSED')
      // Its place is free again: maxQueue is 1.
      expect((await small.decrypt(keys.privateKey, ct)).toString()).to.equal('x')
      await expectP2snError(small.decrypt(keys.privateKey, ct, { signal: controller.signal }), 'ERR_P2SN_CLOSED')
      // Aborting after the result came changes nothing.
      const late = new AbortController()
      expect((await small.decrypt(keys.privateKey, ct, { signal: late.signal })).toString()).to.equal('x')
      late.abort()
    } finally {
      await small.close()
    }
  })

  it('waitForRoom: beyond maxQueue a decryption waits for room instead of failing, in order; abort and close still end it', async () => {
    const small = new RsaPool({ workers: 1, maxQueue: 1 })
    const cts = ['a', 'b', 'c', 'd'].map((m) => encryptMessage(keys, m))
    const results = cts.map(async (ct) => small.decrypt(keys.privateKey, ct, { waitForRoom: true }))
    expect((await Promise.all(results)).map(String)).to.deep.equal(['a', 'b', 'c', 'd'])

    const controller = new AbortController()
    const first = small.decrypt(keys.privateKey, cts[0]!, { waitForRoom: true })
    const aborted = small.decrypt(keys.privateKey, cts[1]!, { waitForRoom: true, signal: controller.signal })
    const third = small.decrypt(keys.privateKey, cts[2]!, { waitForRoom: true })
    controller.abort()
    await expectP2snError(aborted, 'ERR_P2SN_CLOSED')
    expect(String(await first) + String(await third)).to.equal('ac')

    const running = small.decrypt(keys.privateKey, cts[0]!, { waitForRoom: true }).then(String, (err: P2snError) => err.code)
    const waiting = expectP2snError(small.decrypt(keys.privateKey, cts[1]!, { waitForRoom: true }), 'ERR_P2SN_CLOSED')
    await small.close()
    await waiting
    expect(['a', 'ERR_P2SN_CLOSED']).to.include(await running)
  })

  it('many decryptions cancelled at once, queued or waiting for room: each fails alone, the rest go through', async () => {
    const small = new RsaPool({ workers: 1, maxQueue: 50 })
    try {
      const ct = encryptMessage(keys, 'kept')
      const controllers = Array.from({ length: 3000 }, () => new AbortController())
      const doomed = controllers.map(async (controller) => small.decrypt(keys.privateKey, ct, { waitForRoom: true, signal: controller.signal })
        .then(() => 'decrypted', (err: P2snError) => err.code))
      const kept = Array.from({ length: 20 }, async () => small.decrypt(keys.privateKey, ct, { waitForRoom: true }))
      // Every other one, so that the queue and the overflow both hold cancelled and live entries.
      controllers.forEach((controller, i) => { if (i % 2 === 0) controller.abort() })
      const outcomes = await Promise.all(doomed)
      expect(outcomes.filter((_, i) => i % 2 === 0).every((o) => o === 'ERR_P2SN_CLOSED')).to.equal(true)
      expect(outcomes.filter((_, i) => i % 2 === 1).every((o) => o === 'decrypted')).to.equal(true)
      expect((await Promise.all(kept)).map(String)).to.deep.equal(Array(20).fill('kept'))
      // The queue is free again: maxQueue decryptions at once, none refused.
      const again = await Promise.all(Array.from({ length: 50 }, async () => small.decrypt(keys.privateKey, ct)))
      expect(again).to.have.length(50)
    } finally {
      await small.close()
    }
  })

  it('RsaCipher.decryptor({ pool }) waits for room in a full queue, and a destroyed one takes its queued work back', async () => {
    const small = new RsaPool({ workers: 1, maxQueue: 1 })
    try {
      const decryptor = RsaCipher.decryptor(keys, { pool: small })
      const messages = Array.from({ length: 12 }, (_, i) => Buffer.from(`message ${i}`))
      const out: string[] = []
      decryptor.on('data', (message: Buffer) => out.push(message.toString()))
      const ended = new Promise((resolve, reject) => { decryptor.on('end', resolve); decryptor.on('error', reject) })
      for (const message of messages) decryptor.write(encryptMessage(keys, message))
      decryptor.end()
      await ended
      expect(out).to.deep.equal(messages.map(String))

      const signals: AbortSignal[] = []
      const decrypt = small.decrypt.bind(small)
      small.decrypt = async (key, ciphertext, options) => {
        if (options?.signal !== undefined) signals.push(options.signal)
        return decrypt(key, ciphertext, options)
      }
      const doomed = RsaCipher.decryptor(keys, { pool: small })
      doomed.write(encryptMessage(keys, 'x'))
      doomed.write(encryptMessage(keys, 'y'))
      doomed.destroy()
      await new Promise((resolve) => doomed.on('close', resolve))
      expect(signals.length).to.be.at.least(1)
      expect(signals.every((signal) => signal.aborted)).to.equal(true)
    } finally {
      await small.close()
    }
  })

  describe('multi-block messages', function () {
    it('give the inline path\'s results and errors: bad paddings, rejection: \'error\', maxMessageBlocks, strict, bad blocks', async function () {
      const k = keys.privateKey.size
      const bad = rawEncrypt(keys, encodedMessage(k, 7, Buffer.alloc(k - 10, 0x41)))
      const good = encryptMessage(keys, Buffer.alloc(117, 7))
      const ciphertexts = [
        encryptMessage(keys, Buffer.alloc(10 * 117 + 5, 3)), Buffer.concat([good, bad, good]), Buffer.concat([bad, bad]),
        blocks(good, 32), blocks(good, 33), Buffer.concat([good, good, keys.publicKey.numbers.n]), blocks(good, 2).subarray(1), bad
      ]
      for (const rejection of ['implicit', 'error'] as const) {
        for (const strict of [false, true]) {
          const results = await Promise.all(ciphertexts.map(async (ct) => pooled(pool, keys, ct, rejection, strict)))
          expect(results, `${rejection}, strict ${strict}`).to.deep.equal(ciphertexts.map((ct) => inline(keys, ct, rejection, strict)))
        }
      }
      // And the same words, not only the same code.
      const inlineError = await outcomeOf(Promise.resolve().then(() => decryptMessage(keys, blocks(good, 33))))
      expect(inlineError).to.equal('ERR_P2SN_MESSAGE_TOO_LONG')
      const [fromPool, fromInline] = await Promise.all([
        pool.decrypt(keys.privateKey, Buffer.concat([good, bad]), { rejection: 'error' }).catch((err: Error) => err.message),
        Promise.resolve().then(() => decryptMessage(keys, Buffer.concat([good, bad]), { rejection: 'error' })).catch((err: Error) => err.message)
      ])
      expect(fromPool).to.equal(fromInline)
    })

    it('each block is an entry of the queue: a message of maxQueue blocks fills it, a longer one waits for room', async function () {
      await withPool({ workers: 1, maxQueue: 4 }, async (small) => {
        const full = small.decrypt(keys.privateKey, blocks(block, 4))
        await expectP2snError(small.decrypt(keys.privateKey, block), 'ERR_P2SN_POOL_BUSY')
        expect(String(await full)).to.equal('bbbb')
        const long = small.decrypt(keys.privateKey, blocks(block, 10), { waitForRoom: true })
        const after = small.decrypt(keys.privateKey, encryptMessage(keys, 'after'), { waitForRoom: true })
        expect(String(await long) + String(await after)).to.equal('bbbbbbbbbbafter')
      })
    })

    it('are refused for their public faults before anything is queued, even when the queue is full', async function () {
      await withPool({ workers: 1, maxQueue: 1 }, async (small) => {
        const running = small.decrypt(keys.privateKey, block)
        const refused = [
          small.decrypt(keys.privateKey, blocks(block, 33), { waitForRoom: true }),
          small.decrypt(keys.privateKey, blocks(block, 3), { waitForRoom: true, maxMessageBlocks: 2 }),
          small.decrypt(keys.privateKey, blocks(block, 2), { waitForRoom: true, strict: true }),
          small.decrypt(keys.privateKey, Buffer.concat([block, keys.publicKey.numbers.n]), { waitForRoom: true }),
          small.decrypt(keys.privateKey, block.subarray(1), { waitForRoom: true }),
          small.decrypt(keys.privateKey, block, { waitForRoom: true, maxMessageBlocks: 0 })
        ].map(outcomeOf)
        // Settled before a turn of the event loop has passed: none of them waited.
        const settled = await Promise.race([Promise.all(refused), settle(1).then(() => 'still waiting')])
        expect(settled).to.deep.equal([
          'ERR_P2SN_MESSAGE_TOO_LONG', 'ERR_P2SN_MESSAGE_TOO_LONG', 'ERR_P2SN_MESSAGE_TOO_LONG',
          'ERR_P2SN_BAD_CIPHERTEXT', 'ERR_P2SN_BAD_CIPHERTEXT', 'ERR_P2SN_INVALID_ARGUMENT'
        ])
        expect(String(await running)).to.equal('b')
      })
    })

    it('an abort cancels every block of a message, queued or waiting for room, and frees their places at once', async function () {
      await withPool({ workers: 1, maxQueue: 4 }, async (small) => {
        const controller = new AbortController()
        const cancelled = outcomeOf(small.decrypt(keys.privateKey, blocks(block, 10), { waitForRoom: true, signal: controller.signal }))
        controller.abort()
        expect(await cancelled).to.equal('ERR_P2SN_CLOSED')
        // Its four places in the queue are free again, and nothing of it waits before these.
        const next = await Promise.all(Array.from({ length: 4 }, async () => small.decrypt(keys.privateKey, block)))
        expect(next.map(String)).to.deep.equal(['b', 'b', 'b', 'b'])
      })
    })
  })

  describe('memory of cancelled decryptions', function () {
    // 2,000 blocks: a 256 KB ciphertext, in memory of its own.
    const BLOCKS = 2000

    beforeEach(function () {
      if (typeof global.gc !== 'function') {
        this.currentTest!.title += ' (skipped: global.gc is missing; run mocha with --node-option expose-gc)'
        this.skip()
      }
    })

    it('a cancelled decryption still in the queue lets go of its ciphertext at once', async function () {
      await withPool({ workers: 1 }, async (small) => {
        // Two slow batches keep the one worker busy (one running, one waiting at it), so that
        // what comes next stays in the queue.
        const busy = [small.decrypt(keys.privateKey, blocks(block, 8), { engine: 'forge' })]
        await settle()
        busy.push(small.decrypt(keys.privateKey, blocks(block, 8), { engine: 'forge' }))
        await settle()
        const controller = new AbortController()
        const queued = decryptUnheld(small, keys, block, BLOCKS, { signal: controller.signal })
        await settle()
        controller.abort()
        global.gc!()
        expect(queued.collected(), 'the ciphertext was collected').to.equal(true)
        expect(await queued.outcome).to.equal('ERR_P2SN_CLOSED')
        expect((await Promise.all(busy)).map(String)).to.deep.equal(['bbbbbbbb', 'bbbbbbbb'])
      })
    })

    it('a cancelled decryption waiting for room lets go of its ciphertext at once', async function () {
      await withPool({ workers: 1, maxQueue: 1 }, async (small) => {
        const first = small.decrypt(keys.privateKey, block)
        const controller = new AbortController()
        const waiting = decryptUnheld(small, keys, block, BLOCKS, { waitForRoom: true, signal: controller.signal })
        await settle()
        controller.abort()
        global.gc!()
        expect(waiting.collected(), 'the ciphertext was collected').to.equal(true)
        expect(await waiting.outcome).to.equal('ERR_P2SN_CLOSED')
        expect(String(await first)).to.equal('b')
      })
    })
  })

  it('a worker takes at most 64 blocks a batch: work it has not taken can still be cancelled', async () => {
    await withPool({ workers: 1 }, async (one) => {
      const controller = new AbortController()
      // 600 decryptions wait on this one signal, a listener each, taken off as each ends (see
      // the test below): no leak, but Node warns from 11 listeners on.
      setMaxListeners(0, controller.signal)
      let done = 0
      const all = Array.from({ length: 600 }, async () => {
        await one.decrypt(keys.privateKey, block, { signal: controller.signal })
        done++
      })
      await Promise.race(all)
      controller.abort()
      await Promise.allSettled(all)
      // Two batches a worker at most were out when it was aborted: one a batch of 600 before.
      expect(done).to.be.at.most(2 * 64)
    })
  })

  it('a signal shared by many decryptions holds one abort listener for each still running, and none once all have ended', async () => {
    const { signal } = new AbortController()
    setMaxListeners(0, signal)
    // One with bad padding, which fails in the worker; one refused before the queue (not whole blocks).
    const badPadding = Buffer.alloc(keys.privateKey.size)
    badPadding[badPadding.length - 1] = 5
    const running = [
      ...Array.from({ length: 20 }, async () => pool.decrypt(keys.privateKey, block, { signal })),
      pool.decrypt(keys.privateKey, badPadding, { signal, rejection: 'error' })
    ]
    const refused = outcomeOf(pool.decrypt(keys.privateKey, block.subarray(1), { signal }))
    expect(getEventListeners(signal, 'abort')).to.have.length(21)
    expect((await Promise.allSettled(running)).map((outcome) => outcome.status)).to.deep.equal([...Array<string>(20).fill('fulfilled'), 'rejected'])
    expect(await refused).to.equal('ERR_P2SN_BAD_CIPHERTEXT')
    expect(getEventListeners(signal, 'abort')).to.have.length(0)
  })

  it('urgent: a decryption goes ahead of the queue, and in even when it is full (a handshake\'s key check)', async () => {
    await withPool({ workers: 1, maxQueue: 300 }, async (one) => {
      const order: string[] = []
      const queued = Array.from({ length: 300 }, async (_, i) => {
        await one.decrypt(keys.privateKey, block)
        order.push(`message ${i}`)
      })
      await expectP2snError(one.decrypt(keys.privateKey, block), 'ERR_P2SN_POOL_BUSY')
      const urgent = one.decrypt(keys.privateKey, encryptMessage(keys, 'key check'), { urgent: true }).then((m) => { order.push(m.toString()) })
      await Promise.all([...queued, urgent])
      // Behind the first batches at most, which the worker had already taken.
      expect(order.indexOf('key check')).to.be.at.most(2 * 64)
    })
  })

  it('keyCheck: P2SN:KEYCHECK for a well-padded P2SN:KEYCHECK and no bytes for every other block, as decryptsTo answers inline, on both engines', async () => {
    const keycheck = Buffer.from('P2SN:KEYCHECK')
    for (const engine of ['openssl', 'forge'] as const) {
      for (const cls of CIPHERTEXT_CLASSES) {
        for (const text of ['P2SN:KEYCHECK', 'P2SN:KEYCHECX', 'probe', '']) {
          const ciphertext = ciphertextOf(cls, keys, Buffer.from(text))
          const answer = await pool.decrypt(keys.privateKey, ciphertext, { keyCheck: true, engine })
          const matched = decryptsTo(keys.privateKey, ciphertext, keycheck, resolveEngine(engine))
          expect(matched, `${cls}, ${text}`).to.equal(cls === 'valid' && text === 'P2SN:KEYCHECK')
          expect(answer.toString('hex'), `${engine}, ${cls}, ${text}`).to.equal(matched ? keycheck.toString('hex') : '')
        }
      }
    }
  })

  it('keyCheck blocks and ordinary ones queued in one turn share a worker\'s batch, and each gets its own answer', async () => {
    const keycheck = Buffer.from('P2SN:KEYCHECK')
    const openssl = resolveEngine('openssl')
    const calls: Array<{ ciphertext: Buffer, options: PoolDecryptOptions, expected: string }> = []
    const ordinary = (ciphertext: Buffer, options: PoolDecryptOptions = {}): void => {
      calls.push({ ciphertext, options, expected: inline(keys, ciphertext, options.rejection, options.strict) })
    }
    const check = (ciphertext: Buffer, options: PoolDecryptOptions = {}): void => {
      const matched = decryptsTo(keys.privateKey, ciphertext, keycheck, openssl)
      calls.push({ ciphertext, options: { ...options, keyCheck: true }, expected: matched ? keycheck.toString('hex') : '' })
    }
    const bad = ciphertextOf('no separator', keys, keycheck)
    ordinary(encryptMessage(keys, Buffer.alloc(300, 'a')))
    check(encryptMessage(keys, keycheck))
    check(bad)
    ordinary(bad)
    ordinary(bad, { rejection: 'error' })
    check(ciphertextOf('valid', keys, Buffer.from('probe')), { engine: 'forge' })
    ordinary(encryptMessage(keys, 'after'), { engine: 'forge' })
    check(encryptMessage(keys, keycheck), { urgent: true })
    ordinary(encryptMessage(keys, Buffer.alloc(500, 'b')))
    await withPool({ workers: 1 }, async (single) => {
      // Every call before the first await: one turn, so the worker gets them in one batch.
      const answers = await Promise.all(calls.map(async ({ ciphertext, options }) => single.decrypt(keys.privateKey, ciphertext, options).then(
        (message) => message.toString('hex'),
        (err: P2snError) => err.code
      )))
      expect(answers).to.deep.equal(calls.map((call) => call.expected))
    })
  })

  it('keyCheck implies strict: two blocks, a short block or one not below the modulus fail as inline, before a worker sees them', async () => {
    const keycheck = encryptMessage(keys, 'P2SN:KEYCHECK')
    const cases: Array<[Buffer, string]> = [
      [blocks(keycheck, 2), 'ERR_P2SN_MESSAGE_TOO_LONG'],
      [keycheck.subarray(1), 'ERR_P2SN_BAD_CIPHERTEXT'],
      [Buffer.alloc(keycheck.length, 0xff), 'ERR_P2SN_BAD_CIPHERTEXT']
    ]
    for (const [ciphertext, code] of cases) {
      expectP2snErrorSync(() => decryptsTo(keys.privateKey, ciphertext, Buffer.from('P2SN:KEYCHECK'), resolveEngine('openssl')), code as P2snError['code'])
      await expectP2snError(pool.decrypt(keys.privateKey, ciphertext, { keyCheck: true, maxMessageBlocks: 10 }), code as P2snError['code'])
    }
  })

  it('close() fails the decryptions still waiting for a worker with ERR_P2SN_CLOSED', async () => {
    const small = new RsaPool({ workers: 1 })
    const ct = encryptMessage(keys, 'x')
    const waiting = Array.from({ length: 6 }, async () => small.decrypt(keys.privateKey, ct).then(String, (err: P2snError) => err.code))
    await small.close()
    const outcomes = await Promise.all(waiting)
    expect(outcomes.every((o) => o === 'x' || o === 'ERR_P2SN_CLOSED')).to.equal(true)
    expect(outcomes).to.include('ERR_P2SN_CLOSED')
  })

  it('runs the built-in engines by name or object, and refuses an engine object of one\'s own', async () => {
    const ct = encryptMessage(keys, 'engines')
    expect((await pool.decrypt(keys.privateKey, ct, { engine: 'forge' })).toString()).to.equal('engines')
    expect((await pool.decrypt(keys.privateKey, ct, { engine: opensslEngine })).toString()).to.equal('engines')
    await expectP2snError(pool.decrypt(keys.privateKey, ct, { engine: { ...opensslEngine } }), 'ERR_P2SN_INVALID_ARGUMENT')
  })

  it('a private key of three primes: openssl decrypts with it, and the forge engine refuses it in the workers too', async () => {
    const threePrimes = parsePrivateKey(fixtureText('multi-prime/three-primes-2048.pem'))
    const ct = encryptMessage(threePrimes, 'three primes')
    expect((await pool.decrypt(threePrimes.privateKey, ct)).toString()).to.equal('three primes')
    const err = await expectP2snError(pool.decrypt(threePrimes.privateKey, ct, { engine: 'forge' }), 'ERR_P2SN_INVALID_ARGUMENT')
    expect(err.message).to.include('use engine: \'openssl\', or a two-prime key')
  })

  it('refuses a worker count that is not a whole number of at least 1', () => {
    for (const workers of [0, -1, 1.5, Number.NaN]) {
      expect(() => new RsaPool({ workers })).to.throw(P2snError).with.property('code', 'ERR_P2SN_INVALID_ARGUMENT')
    }
  })
})
