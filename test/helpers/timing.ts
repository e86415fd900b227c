/**
 * Waiting helpers shared by the tests: a plain delay, a few turns of the event loop, a deadline
 * for things that must happen at once, polling for a condition, waiting for a close, and a count
 * of what keeps the process alive, to check that a test file leaves no socket, server or timer
 * behind.
 * @module
 */
import { expect } from 'chai'

/** Resolves after `ms` milliseconds. */
export function delay (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Resolves after `turns` turns of the event loop (`setImmediate`), for anything emitted late,
 * asynchronously, to come out. Default one turn.
 */
export async function settle (turns = 1): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve))
}

/**
 * Resolves as `promise` does, but rejects with an error naming `what` if it has not settled
 * within `ms`: for things that must happen at once, not at a timeout.
 */
export async function within<T> (ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`${what} did not happen within ${ms} ms`)) }, ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Resolves once `condition` holds (it may be asynchronous), checking at once and then every
 * 10 ms; rejects with an error naming `what` once `ms` have passed without it. The polling stops
 * then too: wrapped in {@link within} instead, it would go on for ever after a failure.
 */
export async function until (condition: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!await condition()) {
    if (Date.now() >= deadline) throw new Error(`${what} did not happen within ${ms} ms`)
    await delay(10)
  }
}

/**
 * Resolves when `emitter` emits 'close', whatever it failed with. Call it before the close can
 * happen (before the action that causes it), or the event is missed.
 */
export async function closing (emitter: NodeJS.EventEmitter): Promise<void> {
  await new Promise<void>((resolve) => { emitter.once('close', () => { resolve() }) })
}

/**
 * The handles keeping the process alive (sockets, servers, pipes, child processes: `…Wrap`) and
 * its timers, counted by kind. Short-lived requests (file reads, closing) are left out.
 */
function activeResources (): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const kind of process.getActiveResourcesInfo()) {
    if (!kind.endsWith('Wrap') && kind !== 'Timeout') continue
    counts[kind] = (counts[kind] ?? 0) + 1
  }
  return counts
}

/**
 * {@link activeResources} once what is closing now is gone (after 20 ms): take it before a
 * file's tests, and check with {@link expectNoLeakedResources} after them.
 */
export async function resourceBaseline (): Promise<Record<string, number>> {
  await delay(20)
  return activeResources()
}

/**
 * Asserts, 20 ms after the tests, that the same handles are open as in `baseline` (from
 * {@link resourceBaseline}) and no more timers: a timer of another test file may have been
 * running then, but none of ours may run now.
 */
export async function expectNoLeakedResources (baseline: Record<string, number> | undefined): Promise<void> {
  await delay(20)
  expect(baseline, 'the baseline was taken').to.not.equal(undefined)
  const { Timeout: timers = 0, ...handles } = activeResources()
  const { Timeout: timersBefore = 0, ...handlesBefore } = baseline!
  expect(handles).to.deep.equal(handlesBefore)
  expect(timers).to.be.at.most(timersBefore)
}
