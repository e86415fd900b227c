/**
 * Assertions on failures: what a function threw, and a {@link P2snError} with its code, thrown
 * at once ({@link expectP2snErrorSync}) or by a promise or function that may be asynchronous
 * ({@link expectP2snError}); and the next error an emitter emits, as a rejection
 * ({@link nextError}), to hand to the latter.
 * @module
 */
import { once } from 'node:events'
import { expect } from 'chai'
import { P2snError, type P2snErrorCode } from '../../lib/index.js'

/** Runs `fn` and returns what it threw; fails when it returns. */
export function thrown (fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  expect.fail('expected an error, but nothing was thrown')
}

/**
 * Asserts that `fn` throws, synchronously, a {@link P2snError} carrying `code`, and returns the
 * error. A promise that `fn` returns is not awaited: use {@link expectP2snError} for that.
 */
export function expectP2snErrorSync (fn: () => unknown, code: P2snErrorCode): P2snError {
  const err = thrown(fn)
  expect(err).to.be.an.instanceof(P2snError)
  expect((err as P2snError).code).to.equal(code)
  return err as P2snError
}

/**
 * Asserts that `action` fails with a {@link P2snError} carrying `code`: a promise must reject,
 * a function must throw or return a promise that rejects. Resolves with the error.
 */
export async function expectP2snError (action: Promise<unknown> | (() => unknown), code: P2snErrorCode): Promise<P2snError> {
  let failure: unknown
  let failed = false
  try {
    await (typeof action === 'function' ? action() : action)
  } catch (err) {
    failure = err
    failed = true
  }
  expect(failed, `expected a P2snError ${code}, but nothing failed`).to.equal(true)
  expect(failure).to.be.an.instanceof(P2snError)
  expect((failure as P2snError).code).to.equal(code)
  return failure as P2snError
}

/**
 * Rejects with the next error `emitter` emits: `events.once` would resolve with it, and
 * {@link expectP2snError} wants a promise that fails. Never resolves.
 */
export async function nextError (emitter: NodeJS.EventEmitter): Promise<never> {
  const [err] = await once(emitter, 'error') as [Error]
  throw err
}
