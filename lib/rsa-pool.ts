/**
 * A pool of worker threads for the private-key operations, so that a busy server decrypts on
 * every core instead of stalling its event loop. Built on Piscina.
 * @module
 */
import { availableParallelism } from 'node:os'
import { Piscina } from 'piscina'
import { checkLimit } from './arguments.js'
import { P2snError } from './errors.js'
import type { PrivateKey } from './keys.js'
import type { DecryptOptions } from './rsa-cipher.js'
import type { DecryptResult, DecryptTask } from './rsa-worker.js'

/** Options of {@link RsaPool}. */
export interface RsaPoolOptions {
  /** Worker threads. Default: `os.availableParallelism()`. */
  workers?: number
  /** Decryptions that may wait for a worker before new ones fail with `ERR_P2SN_POOL_BUSY`. Default 4096. */
  maxQueue?: number
}

/** Decryptions collected in one turn of the event loop go to the workers as a few batches. */
interface Pending {
  task: DecryptTask
  resolve: (message: Buffer) => void
  reject: (err: Error) => void
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
  readonly #keyDer = new WeakMap<PrivateKey, { id: string, der: Uint8Array }>()
  #pending: Pending[] = []
  #queued = 0
  #closed = false

  constructor (options: RsaPoolOptions = {}) {
    this.workers = checkLimit('workers', options.workers, availableParallelism(), 1)
    this.#maxQueue = checkLimit('maxQueue', options.maxQueue, 4096, 1)
    this.#piscina = new Piscina({
      filename: WORKER,
      minThreads: this.workers,
      maxThreads: this.workers,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1
    })
  }

  /** Decrypts one message in a worker; the same result and errors as `decryptMessage`. */
  decrypt (key: PrivateKey, ciphertext: Buffer, options: DecryptOptions = {}): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new P2snError('ERR_P2SN_CLOSED', 'the rsa pool is closed; create a new one'))
    if (this.#queued >= this.#maxQueue) {
      return Promise.reject(new P2snError('ERR_P2SN_POOL_BUSY', `the rsa pool has ${this.#queued} decryptions waiting (maxQueue); the server is overloaded`))
    }
    const { id, der } = this.#keyOf(key)
    const engine = options.engine === undefined || typeof options.engine === 'string' ? options.engine ?? 'openssl' : options.engine.name
    const task: DecryptTask = {
      keyId: id, keyDer: der, ciphertext, strict: options.strict === true, rejection: options.rejection ?? 'implicit', engine
    }
    return new Promise((resolve, reject) => {
      this.#queued++
      if (this.#pending.push({ task, resolve, reject }) === 1) setImmediate(this.#flush)
    })
  }

  /** Stops the workers; decryptions still waiting fail. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#piscina.destroy()
  }

  #keyOf (key: PrivateKey): { id: string, der: Uint8Array } {
    let entry = this.#keyDer.get(key)
    if (entry === undefined) {
      entry = { id: key.publicKey.fingerprint, der: key.keyObject.export({ type: 'pkcs1', format: 'der' }) }
      this.#keyDer.set(key, entry)
    }
    return entry
  }

  /** Sends what was collected as one batch per worker, at most. */
  readonly #flush = (): void => {
    const pending = this.#pending
    this.#pending = []
    const size = Math.ceil(pending.length / this.workers)
    for (let start = 0; start < pending.length; start += size) {
      this.#run(pending.slice(start, start + size))
    }
  }

  #run (batch: Pending[]): void {
    this.#piscina.run(batch.map((entry) => entry.task)).then((results: DecryptResult[]) => {
      this.#queued -= batch.length
      results.forEach((result, i) => {
        const { resolve, reject } = batch[i]!
        if ('message' in result) resolve(Buffer.from(result.message.buffer, result.message.byteOffset, result.message.byteLength))
        else reject(new P2snError(result.code, result.error))
      })
    }, (err: unknown) => {
      this.#queued -= batch.length
      const error = new P2snError('ERR_P2SN_CLOSED', 'the rsa pool stopped before this decryption finished', { cause: err })
      for (const { reject } of batch) reject(error)
    })
  }
}
