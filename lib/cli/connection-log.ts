/**
 * `listen`'s line per connection event on stderr, each with its time (ISO 8601, UTC):
 *
 *     p2sn: 2025-05-01T12:00:00.000Z 10.0.0.7:51234 opened
 *     p2sn: 2025-05-01T12:00:00.021Z 10.0.0.7:51234 connected with key SHA256:…
 *     p2sn: 2025-05-01T12:00:03.502Z 10.0.0.7:51234 closed after 3.502 s, 4 messages in, 4 out: the client ended it
 *
 * or, with `--log-format json`, one JSON object per line with the fields `time`, `event`
 * (`listening`, `opened`, `handshake`, `closed`, `refused`, `drain`), `address`, `port`,
 * `fingerprint`, `durationMs`, `messagesIn`, `messagesOut`, `reason` and `code`, each where it
 * applies.
 *
 * `-q` hides the text lines but those of a connection that failed; JSON lines, asked for, are
 * always written.
 * @module
 */
import { UsageError, oneLine } from './cli-error.js'
import { peerTarget } from './known-peers.js'

/** `--log-format`. */
export type LogFormat = 'text' | 'json'

/** Reads `--log-format`: text (the default) or json. */
export function parseLogFormat (text: string | undefined): LogFormat {
  if (text === undefined || text === 'text') return 'text'
  if (text === 'json') return 'json'
  throw new UsageError(`bad --log-format '${text}'; choose text or json`)
}

/** What the log knows of one connection. */
export interface LoggedConnection {
  /** The client's address: from the PROXY header with `--proxy-protocol`, else the socket's. */
  readonly address: string
  readonly port: number | undefined
  /** When it was accepted (`Date.now()`). */
  readonly start: number
  messagesIn: number
  messagesOut: number
  fingerprint?: string
  /** True once its `opened` line is written. */
  openedLogged: boolean
}

/** The label of a connection in text lines: `host:port`, `[v6]:port`. */
export function connectionLabel (address: string, port: number | undefined): string {
  return peerTarget(address, port ?? 0)
}

/** Writes the lines, in the chosen format. */
export class ConnectionLog {
  readonly format: LogFormat
  readonly #quiet: boolean

  constructor (format: LogFormat, quiet: boolean) {
    this.format = format
    this.#quiet = quiet
  }

  /** A new connection, for {@link opened} and the rest. */
  connection (address: string | undefined, port: number | undefined, start = Date.now()): LoggedConnection {
    return { address: address ?? 'unknown', port, start, messagesIn: 0, messagesOut: 0, openedLogged: false }
  }

  /** The server listens. */
  listening (address: string, port: number, fingerprint: string): void {
    if (this.format === 'json') this.#json({ time: iso(), event: 'listening', address, port, fingerprint })
    else this.#text(`listening on ${peerTarget(address, port)} with key ${fingerprint}`)
  }

  /** A connection is there (its time: when it was accepted); written once. */
  opened (c: LoggedConnection): void {
    if (c.openedLogged) return
    c.openedLogged = true
    if (this.format === 'json') this.#json({ time: iso(c.start), event: 'opened', address: c.address, port: c.port })
    else this.#text(`${iso(c.start)} ${connectionLabel(c.address, c.port)} opened`)
  }

  /** Its handshake is done. */
  handshake (c: LoggedConnection, fingerprint: string): void {
    c.fingerprint = fingerprint
    this.opened(c)
    if (this.format === 'json') this.#json({ time: iso(), event: 'handshake', address: c.address, port: c.port, fingerprint })
    else this.#text(`${iso()} ${connectionLabel(c.address, c.port)} connected with key ${fingerprint}`)
  }

  /** It closed: `reason` in words, `code` (an error code such as `ERR_P2SN_IDLE_TIMEOUT`) when it failed. */
  closed (c: LoggedConnection, reason: string, code?: string): void {
    this.opened(c)
    const durationMs = Date.now() - c.start
    if (this.format === 'json') {
      this.#json({
        time: iso(), event: 'closed', address: c.address, port: c.port, fingerprint: c.fingerprint,
        durationMs, messagesIn: c.messagesIn, messagesOut: c.messagesOut, reason: oneLine(reason), code
      })
    } else {
      const counts = `${c.messagesIn} message${c.messagesIn === 1 ? '' : 's'} in, ${c.messagesOut} out`
      this.#text(`${iso()} ${connectionLabel(c.address, c.port)} closed after ${(durationMs / 1000).toFixed(3)} s, ${counts}: ${reason}${code === undefined ? '' : ` (${code})`}`, code !== undefined)
    }
  }

  /** A connection refused before it was served (`--max-connections`). */
  refused (address: string | undefined, port: number | undefined, reason: string, code: string): void {
    if (this.format === 'json') this.#json({ time: iso(), event: 'refused', address, port, reason, code })
    else this.#text(`${iso()} ${connectionLabel(address ?? 'unknown', port)} refused: ${reason} (${code})`, true)
  }

  /** The server drains (`signal`) or gave up draining. */
  drain (reason: string, open: number): void {
    if (this.format === 'json') this.#json({ time: iso(), event: 'drain', reason: oneLine(reason), open })
    else this.#text(`${iso()} ${reason}`)
  }

  #text (text: string, failure = false): void {
    if (this.#quiet && !failure) return
    process.stderr.write(`p2sn: ${oneLine(text)}\n`)
  }

  #json (fields: Record<string, unknown>): void {
    process.stderr.write(JSON.stringify(fields) + '\n')
  }
}

function iso (time = Date.now()): string {
  return new Date(time).toISOString()
}
