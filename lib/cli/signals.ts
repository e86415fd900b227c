/**
 * SIGINT and SIGTERM. By default either one stops `p2sn` at once (children of `--exec` are sent
 * SIGTERM) with exit code 130 or 143. A command that can stop gracefully (`listen` drains its
 * connections) takes the first signal over with {@link onFirstSignal}; a second signal then
 * stops the process at once all the same.
 * @module
 */
import { killChildren } from './exec.js'

/** The signals handled, and the exit code of each when it stops the process at once. */
export const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const

/** A signal that {@link onFirstSignal} handlers receive. */
export type StopSignal = keyof typeof SIGNAL_EXIT_CODES

let firstSignalHandler: ((signal: StopSignal) => void) | undefined
let signalled = false

/**
 * Takes over the first SIGINT or SIGTERM: `handler` runs instead of the exit (`undefined` gives
 * it back). The next signal, of either kind, still exits at once.
 */
export function onFirstSignal (handler: ((signal: StopSignal) => void) | undefined): void {
  firstSignalHandler = handler
}

/** Installs the process's handlers of SIGINT and SIGTERM; once, from the entry point. */
export function installSignalHandlers (): void {
  for (const signal of Object.keys(SIGNAL_EXIT_CODES) as StopSignal[]) {
    process.on(signal, () => {
      const handler = firstSignalHandler
      if (!signalled && handler !== undefined) {
        signalled = true
        handler(signal)
        return
      }
      killChildren('SIGTERM')
      process.exit(SIGNAL_EXIT_CODES[signal])
    })
  }
}
