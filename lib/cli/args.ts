/**
 * Command-line parsing on `node:util` `parseArgs`, with every mistake turned into one
 * {@link UsageError} line, and the checks of ports, key sizes and fingerprints.
 * @module
 */
import { parseArgs } from 'node:util'
import { MAX_MODULUS_BITS, MIN_MODULUS_BYTES } from '../index.js'
import { UsageError, errorMessage } from './cli-error.js'

/** Options of one command, as `parseArgs` takes them. */
export type OptionSpecs = Record<string, { type: 'string' | 'boolean', short?: string, multiple?: boolean }>

/** A parsed command line. */
export interface ParsedArgs {
  /** Arguments that are not options, in order. */
  positionals: string[]
  /** True when the boolean option was given. */
  flag (name: string): boolean
  /** The string option's value, or `undefined` when it was not given (the last, when given twice). */
  string (name: string): string | undefined
  /** Every value of a string option that may be repeated (`multiple`), in order; none: `[]`. */
  strings (name: string): string[]
}

/** True when `--help` or `-h` comes before any `--`: help wins over every other mistake. */
export function wantsHelp (argv: readonly string[]): boolean {
  for (const arg of argv) {
    if (arg === '--') return false
    if (arg === '--help' || arg === '-h') return true
  }
  return false
}

/**
 * Parses `argv` strictly: unknown options, missing values and values given to flags are
 * {@link UsageError}s.
 */
export function parseCommandLine (argv: readonly string[], options: OptionSpecs): ParsedArgs {
  let parsed: { values: Record<string, string | boolean | string[] | undefined>, positionals: string[] }
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true }) as typeof parsed
  } catch (err) {
    throw new UsageError(describeParseError(err))
  }
  const { values, positionals } = parsed
  return {
    positionals,
    flag: (name) => values[name] === true,
    string: (name) => {
      const value = values[name]
      return typeof value === 'string' ? value : undefined
    },
    strings: (name) => {
      const value = values[name]
      return Array.isArray(value) ? value : typeof value === 'string' ? [value] : []
    }
  }
}

function describeParseError (err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  const message = errorMessage(err)
  const option = /'(-[^' ]+)/.exec(message)?.[1] ?? 'an option'
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    return /^-\d/.test(option) ? `bad argument '${option}': negative numbers are not allowed here` : `unknown option ${option}`
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    if (message.includes('does not take an argument')) return `option ${option} takes no value`
    if (message.includes('ambiguous')) return `option ${option} needs a value (write ${option}=VALUE for a value that starts with -)`
    return `option ${option} needs a value`
  }
  return message.split('\n')[0] ?? message
}

/** Checks the number of positional arguments, naming what is missing or extra. */
export function expectPositionals (args: ParsedArgs, names: readonly string[]): string[] {
  const { positionals } = args
  if (positionals.length < names.length) throw new UsageError(`missing ${names[positionals.length]}`)
  if (positionals.length > names.length) throw new UsageError(`unexpected argument '${positionals[names.length]}'`)
  return positionals
}

/** With `--stdio` there is no address: `what` (such as `'PORT'`) names what must not be given. */
export function expectNoPositionalsWithStdio (args: ParsedArgs, what: string): void {
  if (args.positionals.length > 0) throw new UsageError(`--stdio takes no ${what} (got '${args.positionals[0]}'): the protocol runs over stdin and stdout`)
}

/** Checks that `--exec`, when given, names a command. */
export function checkExecCommand (command: string | undefined): void {
  if (command !== undefined && command.trim() === '') throw new UsageError('--exec needs a command')
}

/**
 * A TCP port: a decimal whole number from 1 (or 0 with `allowZero`: any free port) to 65535.
 */
export function parsePort (text: string, allowZero = false): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN
  const min = allowZero ? 0 : 1
  if (!(port >= min && port <= 65535)) {
    throw new UsageError(`bad port '${text}'; a port is a whole number from ${min} to 65535${allowZero ? ' (0 picks a free one)' : ''}`)
  }
  return port
}

/** A key size for `keygen --bits`: a whole number from 1024 to 16384. */
export function parseBits (text: string): number {
  const min = MIN_MODULUS_BYTES * 8
  const bits = /^\d{1,6}$/.test(text) ? Number(text) : NaN
  if (!(bits >= min && bits <= MAX_MODULUS_BITS)) {
    throw new UsageError(`bad --bits '${text}'; choose a whole number of bits from ${min} to ${MAX_MODULUS_BITS} (2048 is usual)`)
  }
  return bits
}

/** Most worker threads `--workers` takes: far more than any machine has cores. */
const MAX_WORKERS = 1024

/** A thread count for `listen --workers`: a whole number from 1 to 1024. */
export function parseWorkers (text: string): number {
  const workers = /^\d{1,4}$/.test(text) ? Number(text) : NaN
  if (!(workers >= 1 && workers <= MAX_WORKERS)) {
    throw new UsageError(`bad --workers '${text}'; choose a whole number of threads from 1 to ${MAX_WORKERS} (the number of cores is usual)`)
  }
  return workers
}

/**
 * A fingerprint as `p2sn fingerprint` prints it, `SHA256:` and 43 Base64 characters; padding is
 * dropped. `flag` names the option it came with, for the message.
 */
export function parseFingerprint (text: string, flag = '--fingerprint'): string {
  const match = /^SHA256:([A-Za-z0-9+/]{43})=?$/.exec(text.trim())
  if (match === null) {
    throw new UsageError(`bad ${flag} '${text}'; expected SHA256: and 43 base64 characters, as p2sn fingerprint prints it`)
  }
  return `SHA256:${match[1]}`
}

/** The longest delay a timer takes, 2^31 - 1 ms (about 24.8 days). */
const MAX_MILLISECONDS = 2 ** 31 - 1

/**
 * A duration in ms for `flag` (`--idle-timeout`, …): a whole number from `min` to 2147483647;
 * `zero`, when given, says what 0 means, for the message.
 */
export function parseMilliseconds (text: string, flag: string, min = 0, zero?: string): number {
  const ms = /^\d{1,10}$/.test(text) ? Number(text) : NaN
  if (!(ms >= min && ms <= MAX_MILLISECONDS)) {
    throw new UsageError(`bad ${flag} '${text}'; choose a whole number of milliseconds from ${min} to ${MAX_MILLISECONDS}${zero === undefined ? '' : ` (0 ${zero})`}`)
  }
  return ms
}

/** Most connections `--max-connections` takes. */
const MAX_CONNECTIONS = 1_000_000

/** A connection count for `listen --max-connections`: a whole number from 1 to 1000000. */
export function parseConnections (text: string): number {
  const count = /^\d{1,7}$/.test(text) ? Number(text) : NaN
  if (!(count >= 1 && count <= MAX_CONNECTIONS)) {
    throw new UsageError(`bad --max-connections '${text}'; choose a whole number of connections from 1 to ${MAX_CONNECTIONS}`)
  }
  return count
}
