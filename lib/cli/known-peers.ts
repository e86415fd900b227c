/**
 * The known peers file, like ssh's known_hosts: `host:port fingerprint` lines, `#` comments and
 * blank lines allowed. A peer may have several lines, one per key it may present (while its
 * key is rotated): any of them is accepted.
 * @module
 */
import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { CliError, systemErrorCode, systemReason } from './cli-error.js'

/** A peer's record in the file: one line. */
export interface KnownPeer {
  /** `host:port` (`[v6]:port` for IPv6 addresses). */
  target: string
  /** `SHA256:…` */
  fingerprint: string
  /** 1-based line number, for messages. */
  line: number
}

/** How a peer is named in the file: the host as typed, lowercased, and the port. */
export function peerTarget (host: string, port: number): string {
  const name = host.toLowerCase()
  return name.includes(':') ? `[${name}]:${port}` : `${name}:${port}`
}

/** The known peers file at `file`. */
export class KnownPeers {
  readonly file: string

  constructor (file: string) {
    this.file = file
  }

  /** The records of `target`, in file order: none when the peer is new (or the file does not exist). */
  async lookup (target: string): Promise<KnownPeer[]> {
    const lines = await this.#lines()
    const records: KnownPeer[] = []
    for (let i = 0; i < lines.length; i++) {
      const record = parseLine(lines[i]!, i + 1)
      if (record?.target === target) records.push(record)
    }
    return records
  }

  /** Adds a line: for a new peer, or another key of a known one. */
  async add (target: string, fingerprint: string): Promise<void> {
    try {
      await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 })
      await fs.appendFile(this.file, `${target} ${fingerprint}\n`, { mode: 0o600 })
    } catch (err) {
      throw this.#writeError(err)
    }
  }

  /** Replaces the record of `target` (every line of it) with one line for `fingerprint`. */
  async replace (target: string, fingerprint: string): Promise<void> {
    const lines = await this.#lines()
    const kept: string[] = []
    let placed = false
    for (const [i, line] of lines.entries()) {
      if (parseLine(line, i + 1)?.target !== target) {
        kept.push(line)
      } else if (!placed) {
        kept.push(`${target} ${fingerprint}`)
        placed = true
      }
    }
    if (!placed) kept.push(`${target} ${fingerprint}`)
    const temporary = `${this.file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`
    try {
      await fs.writeFile(temporary, kept.join('\n') + '\n', { mode: 0o600 })
      await fs.rename(temporary, this.file)
    } catch (err) {
      await fs.rm(temporary, { force: true })
      throw this.#writeError(err)
    }
  }

  async #lines (): Promise<string[]> {
    let text: string
    try {
      text = await fs.readFile(this.file, 'utf8')
    } catch (err) {
      if (systemErrorCode(err) === 'ENOENT') return []
      throw new CliError(`cannot read ${this.file}: ${systemReason(err)}`)
    }
    const lines = text.split('\n')
    if (lines.at(-1) === '') lines.pop()
    return lines
  }

  #writeError (err: unknown): CliError {
    return new CliError(`cannot record the peer in ${this.file}: ${systemReason(err)}`)
  }
}

function parseLine (line: string, number: number): KnownPeer | undefined {
  const text = line.trim()
  if (text === '' || text.startsWith('#')) return undefined
  const [target, fingerprint] = text.split(/\s+/)
  if (target === undefined || fingerprint === undefined) return undefined
  return { target, fingerprint, line: number }
}
