/**
 * Results in the order the work went in, however the work finishes: the ordering that the
 * message layers and the channel need when several decryptions run at once (in worker threads,
 * or spread over turns of the event loop). No streams: it calls back with each outcome.
 * @module
 */

/** How one unit of work ended: its value, or what it threw or rejected with. */
export type Outcome<T> = { ok: true, value: T } | { ok: false, error: unknown }

/** One unit of work in line: its outcome once known, or `undefined` while it runs. */
interface Entry<T> {
  outcome: Outcome<T> | undefined
  /** Set by clear(): a settlement that comes later is ignored, and its value is not kept. */
  dropped: boolean
}

/**
 * A line of work whose outcomes are handed on strictly in the order the work was added: a
 * result that is ready waits for every one before it, and a failure is delivered in its place
 * like a value, for the caller to decide what it means.
 *
 * `deliver` and `afterDeliveries` should not throw: a throw stops the run it happened in and
 * comes out of `add()`, or, during a settlement, as an unhandled rejection. The outcomes behind
 * it stay in line until the next settlement or `add()`. Callers that run user code in
 * `deliver` (stream listeners) catch there.
 */
export class InOrder<T> {
  readonly #deliver: (outcome: Outcome<T>) => void
  readonly #afterDeliveries: (() => void) | undefined
  /** Work in line, oldest first. Short (as long as the caller's concurrency), so shift() is cheap. */
  #line: Array<Entry<T>> = []
  /** Delivering now: work added or settled meanwhile is left to the run under way. */
  #running = false

  /**
   * @param deliver - called with each outcome, in the order the work was added
   * @param afterDeliveries - called once after each run of deliveries (one or more outcomes in
   *   a row), when the line is empty or its head still runs: the moment to look at what the
   *   deliveries changed, such as a stream's buffer, once rather than per outcome
   */
  constructor (deliver: (outcome: Outcome<T>) => void, afterDeliveries?: () => void) {
    this.#deliver = deliver
    this.#afterDeliveries = afterDeliveries
  }

  /** Work added and not yet delivered (running, or done and waiting for the work before it). */
  get size (): number {
    return this.#line.length
  }

  /**
   * Adds one unit of work: a value now, or a Promise of one. What is ready at the head of the
   * line goes to `deliver` at once, in order: a value with nothing ahead of it is delivered
   * synchronously, inside this call (or, if this call comes from `deliver`, right after it
   * returns, by the run under way).
   */
  add (work: T | Promise<T>): void {
    if (!(work instanceof Promise)) {
      this.#line.push({ outcome: { ok: true, value: work }, dropped: false })
      this.#run()
      return
    }
    const entry: Entry<T> = { outcome: undefined, dropped: false }
    this.#line.push(entry)
    work.then((value) => {
      if (entry.dropped) return
      entry.outcome = { ok: true, value }
      this.#run()
    }, (error: unknown) => {
      if (entry.dropped) return
      entry.outcome = { ok: false, error }
      this.#run()
    })
  }

  /**
   * Drops everything in line, running or done: none of it is delivered, and what settles later
   * is ignored. A run of deliveries under way stops after the outcome it is delivering.
   */
  clear (): void {
    for (const entry of this.#line) entry.dropped = true
    this.#line = []
  }

  /** Delivers what is ready at the head of the line, then calls the hook if anything was delivered. */
  #run (): void {
    if (this.#running) return
    let delivered = false
    this.#running = true
    try {
      // The line is read afresh each time: deliver may add to it, or clear() it.
      while (this.#line.length > 0) {
        const { outcome } = this.#line[0]!
        if (outcome === undefined) break
        // Out of line before it is delivered, so that `size` is right inside deliver.
        this.#line.shift()
        this.#deliver(outcome)
        delivered = true
      }
    } finally {
      this.#running = false
    }
    if (delivered) this.#afterDeliveries?.()
  }
}
