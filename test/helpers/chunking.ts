/**
 * Small helpers shared by the stream tests: cut a buffer into chunks, push chunks through a
 * stream and collect what comes out, and destroy a stream quietly. The assertions on a
 * `P2snError` are in `errors.ts`.
 * @module
 */
import { expect } from 'chai'
import { settle } from './timing.js'

/**
 * How {@link rechunk} cuts a buffer:
 * - `'byte'`: one byte per chunk;
 * - an array: cut points, offsets where a new chunk starts, in any order; duplicates and
 *   offsets outside `1 .. length - 1` are ignored (so any list from fast-check can be used);
 * - a function returning numbers in `[0, 1)` (e.g. {@link seededRandom}): a cut after each byte
 *   with probability 1/3.
 */
export type ChunkPlan = 'byte' | readonly number[] | (() => number)

/**
 * Cuts `buf` into consecutive, non-empty chunks as `plan` says. The chunks are views of `buf`;
 * concatenated they give `buf` back. An empty buffer gives no chunks.
 */
export function rechunk (buf: Uint8Array, plan: ChunkPlan): Buffer[] {
  const bytes = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  let cuts: number[]
  if (plan === 'byte') {
    cuts = Array.from({ length: Math.max(bytes.length - 1, 0) }, (_, i) => i + 1)
  } else if (typeof plan === 'function') {
    cuts = []
    for (let i = 1; i < bytes.length; i++) if (plan() < 1 / 3) cuts.push(i)
  } else {
    cuts = [...new Set(plan)].filter((c) => Number.isInteger(c) && c > 0 && c < bytes.length).sort((a, b) => a - b)
  }
  const chunks: Buffer[] = []
  let start = 0
  for (const cut of [...cuts, bytes.length]) {
    if (cut > start) chunks.push(bytes.subarray(start, cut))
    start = cut
  }
  return chunks
}

/** A small deterministic PRNG (mulberry32) giving numbers in `[0, 1)`, for repeatable random chunking. */
export function seededRandom (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The part of a Node (or readable-stream) Duplex that {@link collect} uses. */
interface CollectableStream {
  readonly destroyed: boolean
  write (chunk: unknown): boolean
  end (): unknown
  on (event: string, listener: (...args: unknown[]) => void): unknown
}

/**
 * Writes each of `chunks` into `stream` (stopping early if the stream is destroyed), ends it,
 * and resolves with everything it emitted as 'data', in order, once it ends. Rejects with the
 * first error the stream emits (or a synchronous throw of `write`).
 */
export async function collect<T = Buffer> (stream: CollectableStream, chunks: Iterable<unknown>): Promise<T[]> {
  return await new Promise<T[]>((resolve, reject) => {
    const out: T[] = []
    stream.on('data', (data) => { out.push(data as T) })
    stream.on('error', reject)
    stream.on('end', () => { resolve(out) })
    try {
      for (const chunk of chunks) {
        if (stream.destroyed) return
        stream.write(chunk)
      }
      if (!stream.destroyed) stream.end()
    } catch (err) {
      reject(err)
    }
  })
}

/**
 * Destroys `stream` without an error, after writing `chunks` (a half-written frame, say), and
 * asserts that it closes without emitting 'error'.
 */
export async function expectQuietDestroy (stream: CollectableStream & { destroy (): unknown }, chunks: Iterable<unknown> = []): Promise<void> {
  const errors: unknown[] = []
  stream.on('error', (err) => { errors.push(err) })
  for (const chunk of chunks) stream.write(chunk)
  await new Promise<void>((resolve) => {
    stream.on('close', () => { resolve() })
    stream.destroy()
  })
  // Let any late, asynchronously emitted error surface before looking.
  await settle()
  expect(errors).to.deep.equal([])
  expect(stream.destroyed).to.equal(true)
}
