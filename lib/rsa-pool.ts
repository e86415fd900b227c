/**
 * A pool of worker threads for the private-key operations, so that a busy server decrypts on
 * every core instead of stalling its event loop. Built on Piscina. Each RSA block is one entry
 * in the queue, so a long message's blocks batch and spread across the workers like any others.
 * @module
 */
import { availableParallelism } from 'node:os'
import { Piscina } from 'piscina'
import { checkLimit } from './arguments.js'
import { P2snError } from './errors.js'
import type { PrivateKey } from './keys.js'
import { forgeEngine, opensslEngine, type EngineName } from './rsa-engine.js'
import { blockLimit, countBlocks, type DecryptOptions } from './core/rsa-message.js'
import { FLAG_FORGE, FLAG_KEYCHECK, FLAG_REJECT_WITH_ERROR, type DecryptBatch, type DecryptBatchResult } from './rsa-worker.js'

/** Options of {@link RsaPool}. */
export interface RsaPoolOptions {
  /** Worker threads. Default: `os.availableParallelism()`. */
  workers?: number
  /**
   * RSA blocks (one a message of the standard, n for a message of n blocks) that may be waiting
   * for a worker or running at one before new decryptions fail with `ERR_P2SN_POOL_BUSY`, or with
   * `waitForRoom` wait for room outside the queue. A decryption let in is let in whole: those of
   * its blocks beyond the limit wait for room. Default 4096.
   */
  maxQueue?: number
}

/** Options of {@link RsaPool.decrypt}. */
export interface PoolDecryptOptions extends DecryptOptions {
  /**
   * Aborting it fails the decryption with `ERR_P2SN_CLOSED` and drops its blocks still waiting
   * for a worker, ciphertext and all; blocks already at a worker run to their end.
   */
  signal?: AbortSignal
  /**
   * When `maxQueue` blocks already wait, wait for room instead of failing with
   * `ERR_P2SN_POOL_BUSY`. Channels do, so that an overloaded server slows down (its sockets are
   * read no further) rather than dropping them. Default false.
   */
  waitForRoom?: boolean
  /**
   * Go ahead of the queue, and in even when it is full: for a handshake's key check, so that a
   * new client does not wait behind the messages of those already served, as it does not when
   * decrypting inline. Handshakes under way are few (`maxPendingHandshakes`). Default false.
   */
  urgent?: boolean
  /**
   * Ask only whether the ciphertext, one block, is P2SN:KEYCHECK, as a handshake's key check
   * does: it resolves to `P2SN:KEYCHECK` when it is, and to no bytes when it is anything else,
   * however padded. No synthetic message is made for a bad padding (about 25 µs of a worker's
   * time a 2048-bit block on Node 20), and the answer tells no more than implicit rejection's
   * would (see `decryptsTo`). Implies `strict`; `rejection` is not read (a bad block gives no
   * bytes, never `ERR_P2SN_DECRYPT`). Default false.
   */
  keyCheck?: boolean
}

/**
 * Blocks one batch holds at most: about 64 ms of a worker's time at 2048 bits here. What a
 * worker has taken cannot be cancelled, nor overtaken by urgent work, so batches stay short.
 */
const MAX_BATCH_BLOCKS = 64

/** A key as the workers get it: an id for their cache, and its PKCS#1 DER. */
interface PoolKey { id: string, der: Uint8Array }

/** One RSA block to decrypt, of one {@link Job}. Blocks collected in one turn of the event loop go to the workers as a few batches. */
interface Pending {
  key: PoolKey
  /** Its k bytes; emptied once the bytes are on their way to a worker, or no longer wanted. */
  ciphertext: Uint8Array
  flags: number
  job: Job
  /** Its place in the job's message. */
  index: number
  /**
   * Waiting for room (in #overflow), in the queue (#pending), sent to a worker, or cancelled (its
   * job ended first): a cancelled one stays where it is and is skipped, so that cancelling many
   * at once (a flood of closing channels) costs no search through long lists.
   */
  state: 'overflow' | 'queued' | 'sent' | 'cancelled'
}

/** One call of {@link RsaPool.decrypt}: its blocks, their results as they come in, and its promise. */
interface Job {
  blocks: Pending[]
  parts: Buffer[]
  /** Blocks whose result is still to come. */
  left: number
  over: boolean
  resolve: (message: Buffer) => void
  reject: (err: Error) => void
  /** Takes the job's listener off its signal. */
  unlisten: () => void
}

const NO_BYTES = new Uint8Array(0)
const NO_KEY: PoolKey = { id: '', der: NO_BYTES }
function nothing (): void {}

function cancelled (): P2snError {
  return new P2snError('ERR_P2SN_CLOSED', 'the decryption was cancelled (its signal was aborted) before a worker took it')
}

/**
 * The built-in engine a worker should use; an engine object of one's own cannot cross threads.
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` for an engine object of one's own
 */
export function poolEngineName (engine: DecryptOptions['engine']): EngineName {
  if (engine === undefined) return 'openssl'
  if (engine === 'openssl' || engine === 'forge') return engine
  if (engine === opensslEngine || engine === forgeEngine) return engine.name
  throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'an rsa pool runs the built-in engines only (\'openssl\' or \'forge\'); decrypt inline to use an engine object of your own')
}

// Beside this file: rsa-worker.js once built, rsa-worker.ts when run from source (tests, tsx).
const WORKER = new URL(import.meta.url.endsWith('.ts') ? './rsa-worker.ts' : './rsa-worker.js', import.meta.url).href

/**
 * Worker threads that decrypt P2SN messages. Pass one to servers and channels as `pool`, share
 * it among them, and `close()` it when done. Results are byte for byte those of the inline
 * path; each channel still gets its messages in order.
 */
export class RsaPool {
  /** Number of worker threads. */
  readonly workers: number
  readonly #piscina: Piscina
  readonly #maxQueue: number
  readonly #keyDer = new WeakMap<PrivateKey, PoolKey>()
  /** Blocks in the queue, not yet sent; #queued counts these and those at the workers. */
  #pending: Pending[] = []
  #queued = 0
  /** Blocks waiting for room in a full queue (waitForRoom), oldest first from #overflowHead; not counted in #queued. */
  #overflow: Pending[] = []
  #overflowHead = 0
  /** Cancelled entries still in #pending, for #flush to drop. */
  #cancelledInQueue = 0
  /**
   * Batches out at the workers: at most two per worker, one running and one waiting to, so a
   * worker never idles while its results travel back; the rest wait here and batch up.
   */
  #batchesOut = 0
  #flushScheduled = false
  #closed = false

  constructor (options: RsaPoolOptions = {}) {
    this.workers = checkLimit('workers', options.workers, availableParallelism(), 1)
    this.#maxQueue = checkLimit('maxQueue', options.maxQueue, 4096, 1)
    this.#piscina = new Piscina({
      filename: WORKER,
      minThreads: this.workers,
      maxThreads: this.workers,
      idleTimeout: Infinity,
      // Two batches a worker: the second waits at the worker, which takes it up the moment the
      // first is done instead of idling until its result has reached this thread and Piscina
      // has sent another (with one, a loaded server answered about 2% fewer requests: 3,860
      // against 3,926/s, the mean of three alternating runs each).
      concurrentTasksPerWorker: 2,
      // Piscina's timing histograms go unread.
      recordTiming: false
    })
  }

  /**
   * Decrypts one message in the workers, each of its blocks an entry of the queue; the same
   * result and errors as `decryptMessage`. The public facts (whole blocks, `maxMessageBlocks`,
   * each block below the modulus) are checked here, before any block is queued.
   */
  decrypt (key: PrivateKey, ciphertext: Buffer, options: PoolDecryptOptions = {}): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new P2snError('ERR_P2SN_CLOSED', 'the rsa pool is closed; create a new one'))
    if (this.#queued >= this.#maxQueue && options.waitForRoom !== true && options.urgent !== true) {
      return Promise.reject(new P2snError('ERR_P2SN_POOL_BUSY', `the rsa pool has ${this.#queued} rsa blocks waiting or running (maxQueue); the server is overloaded`))
    }
    let engine: EngineName
    let blocks: number
    try {
      engine = poolEngineName(options.engine)
      // blockLimit checks maxMessageBlocks whatever else is set; a key check is one block.
      const limit = blockLimit(options)
      const strict = options.strict === true || options.keyCheck === true
      blocks = countBlocks(key, ciphertext, strict ? 1 : limit, strict)
    } catch (err) {
      return Promise.reject(err)
    }
    const flags = (options.rejection === 'error' ? FLAG_REJECT_WITH_ERROR : 0) | (engine === 'forge' ? FLAG_FORGE : 0) |
      (options.keyCheck === true ? FLAG_KEYCHECK : 0)
    const { signal } = options
    if (signal?.aborted === true) return Promise.reject(cancelled())
    return new Promise((resolve, reject) => {
      const job: Job = { blocks: [], parts: [], left: blocks, over: false, resolve, reject, unlisten: nothing }
      this.#queue(job, this.#keyOf(key), ciphertext, flags, options.urgent === true)
      if (signal !== undefined) this.#cancelOnAbort(job, signal)
    })
  }

  /** Stops the workers; decryptions still waiting fail, and the pool lets go of their ciphertexts. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const waiting = new Set<Job>()
    for (const entry of this.#pending) if (entry.state === 'queued') waiting.add(entry.job)
    for (let i = this.#overflowHead; i < this.#overflow.length; i++) {
      const entry = this.#overflow[i]!
      if (entry.state === 'overflow') waiting.add(entry.job)
    }
    const error = new P2snError('ERR_P2SN_CLOSED', 'the rsa pool was closed before this decryption was done')
    for (const job of waiting) this.#fail(job, error)
    this.#pending = []
    this.#overflow = []
    this.#overflowHead = 0
    this.#cancelledInQueue = 0
    await this.#piscina.destroy()
  }

  /** Puts each block of `ciphertext` in the queue, or to wait for room once it is full. */
  #queue (job: Job, key: PoolKey, ciphertext: Buffer, flags: number, urgent: boolean): void {
    const k = ciphertext.length / job.left
    for (let index = 0; index < job.left; index++) {
      const block = job.left === 1 ? ciphertext : ciphertext.subarray(index * k, (index + 1) * k)
      const entry: Pending = { key, ciphertext: block, flags, job, index, state: 'queued' }
      job.blocks.push(entry)
      if (urgent) {
        // Rare (a key check is one block a handshake), so the copy of unshift does not matter.
        this.#queued++
        this.#pending.unshift(entry)
      } else if (this.#queued < this.#maxQueue) {
        this.#queued++
        this.#pending.push(entry)
      } else {
        entry.state = 'overflow'
        this.#overflow.push(entry)
      }
    }
    this.#scheduleFlush()
  }

  // Apart from decrypt(), so that this listener's closure holds the job and no ciphertext.
  #cancelOnAbort (job: Job, signal: AbortSignal): void {
    const onAbort = (): void => { this.#fail(job, cancelled()) }
    signal.addEventListener('abort', onAbort, { once: true })
    job.unlisten = () => { signal.removeEventListener('abort', onAbort) }
  }

  /** A block's result: the job's message once every block is in. */
  #blockDone (entry: Pending, message: Buffer): void {
    const job = entry.job
    if (job.over) return
    job.parts[entry.index] = message
    if (--job.left > 0) return
    const { parts } = job
    this.#end(job)
    job.resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts))
  }

  /**
   * Fails a job at once (a block failed, its signal was aborted, or the pool closed): its
   * blocks still waiting leave the queue, and their places go to those waiting for room.
   */
  #fail (job: Job, err: Error): void {
    if (job.over) return
    let dequeued = 0
    for (const entry of job.blocks) {
      if (entry.state === 'queued') dequeued++
      if (entry.state === 'queued' || entry.state === 'overflow') entry.state = 'cancelled'
    }
    this.#cancelledInQueue += dequeued
    this.#end(job)
    if (dequeued > 0) this.#dequeued(dequeued)
    job.reject(err)
  }

  /**
   * Lets go of all a job holds: a cancelled entry may sit in a list a while, but without its
   * ciphertext (a frame of up to maxFrameLength) or key.
   */
  #end (job: Job): void {
    job.over = true
    job.unlisten()
    job.unlisten = nothing
    for (const entry of job.blocks) {
      entry.ciphertext = NO_BYTES
      entry.key = NO_KEY
    }
    job.blocks = []
    job.parts = []
  }

  #keyOf (key: PrivateKey): PoolKey {
    let entry = this.#keyDer.get(key)
    if (entry === undefined) {
      entry = { id: key.publicKey.fingerprint, der: key.keyObject.export({ type: 'pkcs1', format: 'der' }) }
      this.#keyDer.set(key, entry)
    }
    return entry
  }

  /** Takes `count` off the queue, and lets in as many of those waiting for room. */
  #dequeued (count: number): void {
    this.#queued -= count
    if (this.#closed) return
    const overflow = this.#overflow
    while (this.#overflowHead < overflow.length && this.#queued < this.#maxQueue) {
      const entry = overflow[this.#overflowHead++]!
      if (entry.state !== 'overflow') continue
      entry.state = 'queued'
      this.#queued++
      this.#pending.push(entry)
    }
    // Drop what was taken from the front now and then, not at every step.
    if (this.#overflowHead === overflow.length) {
      this.#overflow = []
      this.#overflowHead = 0
    } else if (this.#overflowHead > 1024 && this.#overflowHead * 2 > overflow.length) {
      this.#overflow = overflow.slice(this.#overflowHead)
      this.#overflowHead = 0
    }
    this.#scheduleFlush()
  }

  // After this turn of the event loop, so that what the callers queue in it goes in one batch.
  #scheduleFlush (): void {
    if (this.#flushScheduled || this.#pending.length === 0) return
    this.#flushScheduled = true
    setImmediate(this.#flush)
  }

  /**
   * Shares what waits among the free batch places: one a worker while some are idle (a
   * worker given two at once would send the first one's results only with the second's), then
   * a second one each, to wait at the worker while its first runs. A batch that returns frees a
   * place for all that queued meanwhile, so batches stay large under load: the cost of a
   * message between threads (some 50 µs of the event loop's time here) is paid per batch, not
   * per message.
   */
  readonly #flush = (): void => {
    this.#flushScheduled = false
    if (this.#cancelledInQueue > 0) {
      this.#pending = this.#pending.filter((entry) => entry.state === 'queued')
      this.#cancelledInQueue = 0
    }
    const most = this.#batchesOut < this.workers ? this.workers : 2 * this.workers
    // No batch above a worker's share, so that one idle worker does not take what the busy
    // ones will be free for in a moment (under the load generator: 3,825 against 3,672/s, the
    // mean of three alternating runs each; one channel streaming loses about 3%).
    const share = Math.ceil(this.#pending.length / this.workers)
    while (this.#pending.length > 0 && this.#batchesOut < most && !this.#closed) {
      const size = Math.min(share, Math.ceil(this.#pending.length / (most - this.#batchesOut)), MAX_BATCH_BLOCKS)
      this.#run(this.#pending.splice(0, size))
    }
  }

  #run (batch: Pending[]): void {
    const keys: DecryptBatch['keys'] = []
    const keyIndex = new Uint16Array(batch.length)
    const lengths = new Uint32Array(batch.length)
    const flags = new Uint8Array(batch.length)
    let total = 0
    batch.forEach((entry, i) => {
      entry.state = 'sent'
      let index = keys.indexOf(entry.key)
      if (index === -1) index = keys.push(entry.key) - 1
      keyIndex[i] = index
      lengths[i] = entry.ciphertext.length
      flags[i] = entry.flags
      total += entry.ciphertext.length
    })
    const ciphertexts = new Uint8Array(total)
    let offset = 0
    for (const entry of batch) {
      ciphertexts.set(entry.ciphertext, offset)
      offset += entry.ciphertext.length
      // The bytes travel in the batch's copy: the caller's frame is not kept while it runs.
      entry.ciphertext = NO_BYTES
    }
    const task: DecryptBatch = { keys, ciphertexts, lengths, keyIndex, flags }
    this.#batchesOut++
    this.#piscina.run(task, { transferList: [ciphertexts.buffer] }).then((result: DecryptBatchResult) => {
      this.#batchesOut--
      this.#dequeued(batch.length)
      // A failed block has length −1 and the next of the errors, which come in its order.
      let at = 0
      let failed = 0
      batch.forEach((entry, i) => {
        const length = result.lengths[i]!
        if (length < 0) {
          const { code, message } = result.errors[failed++]!
          this.#fail(entry.job, new P2snError(code, message))
          return
        }
        this.#blockDone(entry, Buffer.from(result.messages.buffer, result.messages.byteOffset + at, length))
        at += length
      })
    }, (err: unknown) => {
      this.#batchesOut--
      this.#dequeued(batch.length)
      const error = new P2snError('ERR_P2SN_CLOSED', 'the rsa pool stopped before this decryption finished', { cause: err })
      for (const entry of batch) this.#fail(entry.job, error)
    })
  }
}
