/**
 * How much private-key work the event loop does in one turn: one process-wide budget, and one
 * queue for the work that waits for a turn, so that no peer, whatever its messages, keeps the
 * loop from other connections, timers and I/O for more than a few milliseconds, and every
 * stream gets its turn in the order it asked.
 * @module
 */

/**
 * Milliseconds of private-key work a turn does before the rest waits: four 2048-bit operations
 * on a machine doing 1,000 a second. A turn always gets at least one block done. A budget costs
 * one busy stream about 5-9% of its messages a second, whatever its length. Timed with a stand-in
 * for RSA (busy loops of 950 and 35 µs), the stream chain ran at 0.857× of the stand-in bound with
 * 1 ms, 0.834-0.870× with 4 ms, 0.870-0.875× with 16 ms, and 0.914-0.918× with none. The cost is
 * not the buffers filling: it stays when the writer waits for each message, so that nothing is
 * buffered (146-162 against 83-121 µs a message outside the stand-in). It comes with the turns:
 * waiting a microtask instead of a turn (which would give no fairness) costs nothing measurable.
 * Yet an empty turn after such a burst costs only 10-35 µs, and the cost hardly changes with the
 * budget's length, which sets how many turns there are. What a turn costs the chain beyond that is
 * not known. A longer budget would hold the loop longer for no gain.
 */
export const TURN_BUDGET_MS = 4

let spent = 0
let scheduled = false
/** Work waiting for a turn, first come, first served: one is let go each turn. */
const waiting: Array<() => void> = []

// At the next check phase, after the poll phase's I/O: the budget comes back, and the first
// in line goes (it runs in the microtasks right after this callback, within the same turn).
function turnStarts (): void {
  scheduled = false
  spent = 0
  waiting.shift()?.()
  if (waiting.length > 0) schedule()
}

function schedule (): void {
  if (scheduled) return
  scheduled = true
  setImmediate(turnStarts)
}

/** True while this turn's budget lasts and nobody waits for a turn: work may be done at once. */
export function turnHasRoom (): boolean {
  return spent < TURN_BUDGET_MS && waiting.length === 0
}

/** Runs `work` now and charges the time it took to this turn. */
export function spend<T> (work: () => T): T {
  const started = performance.now()
  try {
    return work()
  } finally {
    spent += performance.now() - started
    schedule()
  }
}

/** Resolves at a later turn, this caller's, after those that asked before it. */
export function turnWithRoom (): Promise<void> {
  return new Promise<void>((resolve) => {
    waiting.push(resolve)
    schedule()
  })
}
