/**
 * How bytes become messages and messages become bytes, in line mode and in raw mode.
 *
 * Line mode: each line of input is one message, without its `\n` (and without a `\r` before
 * it); a last line without `\n` is a message too. A received message is written as exactly
 * one line: one final `\n` (or `\r\n`) in it is dropped, every other CR or LF becomes a space,
 * and `\n` ends it. Raw mode: input is cut into messages that a p2sn receiver accepts by
 * default (`DEFAULT_MAX_MESSAGE_BLOCKS` blocks of its key) and received messages are written as
 * they are.
 * @module
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { DEFAULT_MAX_MESSAGE_BLOCKS, MIN_MODULUS_BYTES, PKCS1_OVERHEAD, type Channel } from '../index.js'
import { CliError } from './cli-error.js'

/** `'lines'`: a message per line; `'raw'`: bytes as they come. */
export type Framing = 'lines' | 'raw'

/** What one block holds with the smallest key accepted (1024 bits): 117 bytes. */
const SMALLEST_BLOCK_PLAINTEXT = MIN_MODULUS_BYTES - PKCS1_OVERHEAD

const LF = 0x0a
const CR = 0x0d
const SPACE = 0x20

/** Splits bytes into line messages (object mode out), refusing lines longer than `maxLine`. */
class LineSplitter extends Transform {
  readonly #maxLine: number
  #pending: Buffer[] = []
  #pendingLength = 0
  #lines = 0

  constructor (maxLine: number) {
    super({ readableObjectMode: true })
    this.#maxLine = maxLine
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
      if (this.#pendingLength > this.#maxLine) {
        callback(this.#tooLong())
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
    if (line.length > this.#maxLine) {
      this.destroy(this.#tooLong())
      return
    }
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, -1)
    this.#lines++
    this.push(line)
  }

  #tooLong (): CliError {
    return new CliError(`line ${this.#lines + 1} of the input is longer than ${this.#maxLine} bytes, the most a p2sn receiver takes as one message by default (${DEFAULT_MAX_MESSAGE_BLOCKS} rsa blocks of its key); use --raw for long lines or binary data`)
  }
}

/** Cuts bytes into messages of at most `size` bytes (object mode out). */
class RawChunker extends Transform {
  readonly #size: number

  constructor (size: number) {
    super({ readableObjectMode: true })
    this.#size = size
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (let start = 0; start < chunk.length; start += this.#size) this.push(chunk.subarray(start, start + this.#size))
    callback()
  }
}

/**
 * What one block holds in both directions of `channel`: the smaller key's, so that a message,
 * and a reply that echoes it, fit what each side takes.
 */
export function blockPlaintextBothWays (channel: Channel): number {
  return Math.min(channel.remotePublicKey!.maxBlockPlaintext, channel.handshake.keyPair!.publicKey.maxBlockPlaintext)
}

/**
 * The messages read from `input`, one Buffer per read; errors of `input` come out of it.
 * Messages are at most `DEFAULT_MAX_MESSAGE_BLOCKS` blocks of the receiver's key, what a p2sn
 * receiver accepts by default (7,840 bytes at 2048 bits): raw input is cut to that size, and a
 * longer line is refused.
 * @param blockPlaintext - the bytes one block of the receiver's key holds (its
 *   `maxBlockPlaintext`). Default 117, a 1024-bit key's, the smallest: 3,744 bytes a message,
 *   which fits every receiver (for many receivers at once).
 */
export function messageReader (input: Readable, framing: Framing, blockPlaintext = SMALLEST_BLOCK_PLAINTEXT): Readable {
  const most = DEFAULT_MAX_MESSAGE_BLOCKS * blockPlaintext
  const splitter = framing === 'lines' ? new LineSplitter(most) : new RawChunker(most)
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
