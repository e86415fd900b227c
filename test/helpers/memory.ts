/**
 * Memory in use, as the memory tests and `npm run bench:floods` measure it. No chai here: the
 * benchmark loads this file too.
 * @module
 */

/**
 * Bytes in use on and off the heap (`heapUsed + arrayBuffers`), after two full collections
 * when node runs with `--expose-gc` (two, since the first can leave what it finalized for the
 * next). Without it, what is still to collect counts too.
 */
export function inUse (): number {
  globalThis.gc?.()
  globalThis.gc?.()
  const { heapUsed, arrayBuffers } = process.memoryUsage()
  return heapUsed + arrayBuffers
}
