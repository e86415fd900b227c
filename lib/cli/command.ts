/**
 * The shape of a `p2sn` command.
 * @module
 */
import type { OptionSpecs, ParsedArgs } from './args.js'

/** One command: its name, help and options, and what it does. */
export interface Command {
  /** As typed: `keygen`, `listen`, … */
  name: string
  /** One line for `p2sn --help`. */
  summary: string
  /** The usage line(s), as in the help. */
  usage: string
  /** The full text of `p2sn <name> --help`. */
  help: string
  /** Options, for `parseArgs`. */
  options: OptionSpecs
  /** Runs the command; resolves with the exit code. */
  run (args: ParsedArgs): Promise<number>
}
