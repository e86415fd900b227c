/**
 * What the client processes of the scale benchmarks (scale-clients.ts, scale-idle.ts,
 * scale-load.ts) share: their numeric arguments, their four 1024-bit keys, and the counted
 * window that starts with the "start" line and ends with one JSON line.
 */
import { generateKeyPair, type KeyPair } from '../lib/index.js'

/** The command line's arguments as numbers (`NaN` where one is not), in order. */
export function numericArguments<T extends number[]> (): T {
  return process.argv.slice(2).map(Number) as T
}

/** Four 1024-bit key pairs, for the connections to take in turn. */
export async function clientKeys (): Promise<KeyPair[]> {
  return await Promise.all(Array.from({ length: 4 }, async () => generateKeyPair({ bits: 1024 })))
}

/**
 * Prints "start", runs `counting` (given the time it started, for its deadline) and resolves
 * with the wall time and this process's CPU time it took, in seconds.
 */
export async function countFromStart (counting: (started: number) => Promise<void>): Promise<{ seconds: number, cpuSeconds: number }> {
  process.stdout.write('start\n')
  const cpuBefore = process.cpuUsage()
  const started = Date.now()
  await counting(started)
  const cpu = process.cpuUsage(cpuBefore)
  const seconds = (Date.now() - started) / 1000
  return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 }
}

/** Prints `result` as one line of JSON: the process's last line. */
export function printResult (result: object): void {
  process.stdout.write(JSON.stringify(result) + '\n')
}
