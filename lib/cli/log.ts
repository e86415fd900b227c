/**
 * What `p2sn` says on stderr besides data: notes (quiet with `--quiet`) and error lines.
 * Everything starts with `p2sn: ` so that it stands out from a program's own output.
 * @module
 */
import { oneLine } from './cli-error.js'

let quiet = false

/** With `true`, {@link note} prints nothing; errors are still printed. */
export function setQuiet (value: boolean): void {
  quiet = value
}

/** A note for the user, such as the address listened on or a newly recorded peer. */
export function note (text: string): void {
  if (!quiet) process.stderr.write(`p2sn: ${oneLine(text)}\n`)
}

/** A warning about safety, on one line: printed even with `--quiet`, like errors. */
export function warn (text: string): void {
  printError(`warning: ${text}`)
}

/** An error, on exactly one line; `command` names the command a usage error is about. */
export function printError (text: string, command?: string): void {
  process.stderr.write(`p2sn${command === undefined ? '' : ' ' + command}: ${oneLine(text)}\n`)
}
