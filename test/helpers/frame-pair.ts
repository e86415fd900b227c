/**
 * In-memory transports for the handshake and playback tests: a connected pair of object-mode
 * frame streams (what {@link HandshakeDuplex} runs over), the same for bytes (what `wrap` runs
 * over), and a scripted peer that reads and writes frames on one end by hand.
 * @module
 */
import { createHook, type AsyncHook } from 'node:async_hooks'
import { Duplex } from 'node:stream'
import { rechunk, type ChunkPlan } from './chunking.js'
import { settle } from './timing.js'

const EOT = 0x04

/**
 * One end of {@link framePair} or {@link bytePair}: each chunk written to it is recorded in
 * {@link RecordingPairEnd.written} and comes out of its peer as one chunk, in the same tick,
 * copied (for chunking, backpressure and asynchronous delivery, see `ChunkingPairEnd` in
 * `duplex-pair.ts`). `end()` ends the peer's readable side and leaves the other direction
 * open (half-open, like a socket with `allowHalfOpen`); `destroy()` gives the peer
 * end-of-stream too, as a peer that hangs up. Writes after the peer is gone are dropped, as
 * bytes sent to a closed socket are.
 */
export class RecordingPairEnd extends Duplex {
  /** Every chunk written to this end, in order (the frames this side sent). */
  readonly written: Buffer[] = []
  #peer: RecordingPairEnd | undefined
  #peerEnded = false

  constructor (objectMode: boolean) {
    super({ objectMode, allowHalfOpen: true })
  }

  /** Connects two ends; used by the pair functions. */
  static connect (a: RecordingPairEnd, b: RecordingPairEnd): void {
    a.#peer = b
    b.#peer = a
  }

  override _read (): void {}

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const copy = Buffer.from(chunk)
    this.written.push(copy)
    const peer = this.#peer
    if (peer !== undefined && !peer.destroyed && !this.#peerEnded) peer.push(copy)
    callback()
  }

  override _final (callback: (error?: Error | null) => void): void {
    this.#endPeer()
    callback()
  }

  override _destroy (error: Error | null, callback: (error: Error | null) => void): void {
    this.#endPeer()
    callback(error)
  }

  #endPeer (): void {
    if (this.#peerEnded) return
    this.#peerEnded = true
    const peer = this.#peer
    if (peer !== undefined && !peer.destroyed) peer.push(null)
  }
}

/** Two connected object-mode ends: a frame (a Buffer, terminator excluded) written to one is read from the other. */
export function framePair (): [RecordingPairEnd, RecordingPairEnd] {
  const a = new RecordingPairEnd(true)
  const b = new RecordingPairEnd(true)
  RecordingPairEnd.connect(a, b)
  return [a, b]
}

/** Two connected byte-stream ends, as a socket pair: each chunk written to one is read from the other as it was cut. */
export function bytePair (): [RecordingPairEnd, RecordingPairEnd] {
  const a = new RecordingPairEnd(false)
  const b = new RecordingPairEnd(false)
  RecordingPairEnd.connect(a, b)
  return [a, b]
}

/**
 * A peer played by hand on one end of a pair (or on a socket): the test reads each frame the
 * side under test sends and chooses what to answer. On a byte stream it cuts the bytes at
 * `0x04` itself (not with the project's FrameSplitter) and adds the terminator to what it sends.
 */
export class ScriptedPeer {
  /** The end this peer reads and writes. */
  readonly end: Duplex
  readonly #bytes: boolean
  readonly #queue: Buffer[] = []
  #tail = Buffer.alloc(0)
  #ended = false
  #wake: (() => void) | undefined

  constructor (end: Duplex) {
    this.end = end
    this.#bytes = !end.readableObjectMode
    end.on('data', (chunk: Buffer) => { this.#onData(chunk) })
    end.on('end', () => { this.#onEnd() })
    end.on('close', () => { this.#onEnd() })
    // Errors of the end are not this peer's to report (the side under test's are checked); a
    // listener keeps them from being thrown.
    end.on('error', () => {})
  }

  /** Bytes received after the last `0x04` (a byte end only). */
  get unterminated (): Buffer {
    return this.#tail
  }

  /** The next frame the side under test sent, or `null` once it ended its stream or closed. */
  async read (): Promise<Buffer | null> {
    while (this.#queue.length === 0) {
      if (this.#ended) return null
      await new Promise<void>((resolve) => { this.#wake = resolve })
    }
    return this.#queue.shift()!
  }

  /** Every frame until the side under test ends its stream. */
  async rest (): Promise<Buffer[]> {
    const frames: Buffer[] = []
    for (let frame = await this.read(); frame !== null; frame = await this.read()) frames.push(frame)
    return frames
  }

  /**
   * Sends one frame (terminator excluded; a byte end adds it), cut as `plan` says on a byte
   * end. Nothing is sent once the end is destroyed.
   */
  send (frame: Buffer | string, plan?: ChunkPlan): void {
    const body = Buffer.from(frame)
    if (this.#bytes) this.sendBytes(Buffer.concat([body, Buffer.from([EOT])]), plan)
    else if (!this.end.destroyed && !this.end.writableEnded) this.end.write(body)
  }

  /** Sends bytes as they are (a byte end only), cut as `plan` says; whole when left out. */
  sendBytes (bytes: Buffer, plan?: ChunkPlan): void {
    if (!this.#bytes) throw new Error('sendBytes needs a byte end')
    for (const chunk of plan === undefined ? [bytes] : rechunk(bytes, plan)) {
      if (this.end.destroyed || this.end.writableEnded) return
      this.end.write(chunk)
    }
  }

  /** Ends this side's stream: the side under test sees end-of-stream. */
  hangUp (): void {
    this.end.end()
  }

  #onData (chunk: Buffer): void {
    if (!this.#bytes) {
      this.#push(chunk)
      return
    }
    let data = Buffer.concat([this.#tail, chunk])
    for (let at = data.indexOf(EOT); at !== -1; at = data.indexOf(EOT)) {
      this.#push(data.subarray(0, at))
      data = data.subarray(at + 1)
    }
    this.#tail = data
  }

  #push (frame: Buffer): void {
    this.#queue.push(frame)
    this.#wakeUp()
  }

  #onEnd (): void {
    this.#ended = true
    this.#wakeUp()
  }

  #wakeUp (): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }
}

/**
 * Watches the timers that code under a folder (the project's `lib/`) sets, to spot leaked ones:
 * a timer is pending from `setTimeout` until it fires or is cleared. Other timers (mocha's, the
 * test's own) are not counted.
 */
export class TimerWatch {
  readonly #folder: string
  readonly #pending = new Map<number, string>()
  readonly #hook: AsyncHook
  #created = 0

  /** @param folder - absolute path; timers whose creation stack passes through it are counted */
  constructor (folder: string) {
    this.#folder = folder
    this.#hook = createHook({
      init: (id, type) => {
        if (type !== 'Timeout') return
        const limit = Error.stackTraceLimit
        Error.stackTraceLimit = 30
        const stack = new Error('timer set here').stack ?? ''
        Error.stackTraceLimit = limit
        if (!stack.includes(this.#folder)) return
        this.#created++
        this.#pending.set(id, stack)
      },
      destroy: (id) => { this.#pending.delete(id) }
    })
  }

  /** Starts watching. */
  enable (): void {
    this.#hook.enable()
  }

  /** Stops watching. */
  disable (): void {
    this.#hook.disable()
  }

  /** Forgets what was seen so far. */
  reset (): void {
    this.#pending.clear()
    this.#created = 0
  }

  /** Timers set since the last reset. */
  get created (): number {
    return this.#created
  }

  /**
   * The creation stacks of the timers still pending, once the destroy notifications of cleared
   * timers (delivered asynchronously) have come in.
   */
  async pending (): Promise<string[]> {
    await settle(3)
    return [...this.#pending.values()]
  }
}
