#!/usr/bin/env node
/**
 * The `p2sn` command: dispatches to its commands, prints help, and turns every failure into
 * one line on stderr and an exit code (see {@link EXIT}); never a stack trace.
 * @module
 */
import fs from 'node:fs'
import { wantsHelp, parseCommandLine } from './args.js'
import { UsageError, describeError } from './cli-error.js'
import type { Command } from './command.js'
import { connect } from './connect.js'
import { isStdoutUsed, stdout } from './endpoint.js'
import { EXIT, EXIT_CODES_HELP } from './exit-codes.js'
import { fingerprint } from './fingerprint.js'
import { keygen } from './keygen.js'
import { listen } from './listen.js'
import { printError } from './log.js'
import { scan } from './scan.js'
import { installSignalHandlers } from './signals.js'

const COMMANDS: readonly Command[] = [keygen, fingerprint, listen, connect, scan]

function version (): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }
    return pkg.version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

function mainHelp (): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length))
  return `p2sn ${version()}: the P2SN encrypted peer-to-peer socket protocol from the shell

Usage: p2sn <command> [options]
       p2sn <command> --help      options of one command
       p2sn --version

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

${COMMANDS.map((c) => c.usage.split('\n').map((line) => `  ${line.trim()}`).join('\n')).join('\n')}

Try it in two terminals:
  p2sn listen 7000 --echo
  echo hello | p2sn connect 127.0.0.1 7000

Files:
  ~/.p2sn/identity.pem   this side's private key, made on first use (mode 0600); used by
                         listen and connect unless given --key
  ~/.p2sn/known_peers    "host:port SHA256:..." per server connected to, like ssh's
                         known_hosts
  P2SN_HOME              environment variable: a directory to use instead of ~/.p2sn

Errors are one line on stderr, starting with "p2sn". Notes, such as the address listened on
or a newly recorded peer, go to stderr too (-q hides them); stdout carries only data.

${EXIT_CODES_HELP}
`
}

/** Runs the command line `argv` (without node and the script); resolves with the exit code. */
async function main (argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined) throw new UsageError('missing command; run p2sn --help to see the commands')
  if (name === '--help' || name === '-h' || name === 'help') {
    const topic = COMMANDS.find((c) => c.name === rest[0])
    stdout().write(topic === undefined ? mainHelp() : topic.help)
    return EXIT.ok
  }
  if (name === '--version' || name === '-V') {
    stdout().write(`${version()}\n`)
    return EXIT.ok
  }
  const command = COMMANDS.find((c) => c.name === name)
  if (command === undefined) {
    const what = name.startsWith('-') ? `unknown option ${name} before the command` : `unknown command '${name}'`
    throw new UsageError(`${what}; the commands are ${COMMANDS.map((c) => c.name).join(', ')} (see p2sn --help)`)
  }
  if (wantsHelp(rest)) {
    stdout().write(command.help)
    return EXIT.ok
  }
  try {
    return await command.run(parseCommandLine(rest, command.options))
  } catch (err) {
    if (err instanceof UsageError) {
      err.command = command.name
      err.message = `${err.message} (see p2sn ${command.name} --help)`
    }
    throw err
  }
}

/** Lets stdout and stderr drain, then exits. */
function exit (code: number): void {
  const streams: NodeJS.WriteStream[] = [process.stderr]
  if (isStdoutUsed()) streams.push(stdout())
  let waiting = streams.length
  const done = (): void => {
    if (--waiting === 0) process.exit(code)
  }
  for (const stream of streams) stream.write('', done)
}

function fail (err: unknown): void {
  const { message, exitCode } = describeError(err)
  printError(message, err instanceof UsageError ? err.command : undefined)
  exit(exitCode)
}

process.on('uncaughtException', fail)
process.on('unhandledRejection', fail)
installSignalHandlers()

main(process.argv.slice(2)).then(exit, fail)
