/**
 * How bytes become messages and messages become bytes, in line mode and in raw mode.
 *
 * Line mode: each line of input is one message, without its `\n` (and without a `\r` before
 * it); a last line without `\n` is a message too. A received message is written as exactly
 * one line: one final `\n` (or `\r\n`) in it is dropped, every other CR or LF becomes a space,
 * and `\n` ends it. Raw mode: input is cut into messages of at most {@link RAW_CHUNK} bytes and
 * received messages are written as they are.
 * @module
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { CliError } from './cli-error.js'

/** `'lines'`: a message per line; `'raw'`: bytes as they come. */
export type Framing = 'lines' | 'raw'

/**
 * Longest line sent as one message: 512 KiB. With 1024-bit keys, the worst case, such a
 * message makes a frame of about 750 KiB, inside the default 1 MiB frame limit.
 */
const MAX_LINE = 512 * 1024
/** Largest message cut from raw input: 64 KiB, well inside every peer's frame limit. */
const RAW_CHUNK = 64 * 1024

const LF = 0x0a
const CR = 0x0d
const SPACE = 0x20

/** Splits bytes into line messages (object mode out). */
class LineSplitter extends Transform {
  #pending: Buffer[] = []
  #pendingLength = 0
  #lines = 0

  constructor () {
    super({ readableObjectMode: true })
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let start = 0
    for (let end = chunk.indexOf(LF); end !== -1; end = chunk.indexOf(LF, start)) {
      this.#pushLine(chunk.subarray(start, end))
      start = end + 1
    }
    if (start < chunk.length) {
      this.#pending.push(chunk.subarray(start))
      this.#pendingLength += chunk.length - start
      if (this.#pendingLength > MAX_LINE) {
        callback(lineTooLong(this.#lines + 1))
        return
      }
    }
    callback()
  }

  override _flush (callback: TransformCallback): void {
    if (this.#pendingLength > 0) this.#pushLine(Buffer.alloc(0))
    callback()
  }

  #pushLine (tail: Buffer): void {
    let line = this.#pending.length === 0 ? tail : Buffer.concat([...this.#pending, tail])
    this.#pending = []
    this.#pendingLength = 0
    if (line.length > MAX_LINE) {
      this.destroy(lineTooLong(this.#lines + 1))
      return
    }
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, -1)
    this.#lines++
    this.push(line)
  }
}

function lineTooLong (line: number): CliError {
  return new CliError(`line ${line} of the input is longer than ${MAX_LINE / 1024} KiB; use --raw for long lines or binary data`)
}

/** Cuts bytes into messages of at most {@link RAW_CHUNK} bytes (object mode out). */
class RawChunker extends Transform {
  constructor () {
    super({ readableObjectMode: true })
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (let start = 0; start < chunk.length; start += RAW_CHUNK) this.push(chunk.subarray(start, start + RAW_CHUNK))
    callback()
  }
}

/** The messages read from `input`, one Buffer per read; errors of `input` come out of it. */
export function messageReader (input: Readable, framing: Framing): Readable {
  const splitter = framing === 'lines' ? new LineSplitter() : new RawChunker()
  input.once('error', (err) => splitter.destroy(err))
  return input.pipe(splitter)
}

/** The bytes to write for a received message. */
export function formatMessage (message: Buffer, framing: Framing): Buffer {
  if (framing === 'raw') return message
  let end = message.length
  if (end > 0 && message[end - 1] === LF) {
    end--
    if (end > 0 && message[end - 1] === CR) end--
  }
  const line = Buffer.allocUnsafe(end + 1)
  for (let i = 0; i < end; i++) {
    const byte = message[i]!
    line[i] = byte === LF || byte === CR ? SPACE : byte
  }
  line[end] = LF
  return line
}
