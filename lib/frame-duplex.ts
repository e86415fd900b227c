/**
 * Framing of a byte duplex: a duplex of frames over a socket (or any byte duplex), made of
 * `FrameJoiner`, the socket and `FrameSplitter` with pumpify, for composing a channel by hand.
 * @module
 */
import type { Duplex, Duplex as NodeDuplex } from 'node:stream'
import Pumpify from 'pumpify'
import { Duplex as StreamDuplex } from './streams.js'
import { P2snError, toP2snError } from './errors.js'
import { FrameJoiner } from './frame-joiner.js'
import { FrameSplitter, type FrameSplitterOptions } from './frame-splitter.js'
import { MESSAGE_HIGH_WATER_MARK } from './protocol.js'

type Callback = (error?: Error | null) => void

/**
 * pumpify's object-mode chain holding as few frames a side as the layers do (pumpify's own
 * default is 16). Neither option destroys anything on its own: the chain's end, error or
 * destroy() goes through pump, which tears down every stream of the chain, socket included.
 */
const FrameChain = Pumpify.ctor({ autoDestroy: false, destroy: false, objectMode: true, highWaterMark: MESSAGE_HIGH_WATER_MARK })

/** How long a clean destroy() after end() waits for the frames written to go out. */
const DESTROY_LINGER = 1000

/**
 * Frames a byte duplex: returns an object-mode duplex to which each write is one frame, sent
 * with its `0x04` terminator, and from which each `'data'` is one frame received, terminator
 * removed. `options` are the {@link FrameSplitter}'s (`maxFrameLength` and the tighter limit of
 * the first frames), checked as bytes arrive. This is the bottom of a channel composed by hand:
 * put a {@link HandshakeDuplex} on it, then the message layers.
 *
 * The result takes `duplex` over, and behaves like a socket:
 * - an error of `duplex` comes out of the result as `ERR_P2SN_CONNECTION`, with the socket's
 *   error as `cause`, and closes everything; so do the layers' errors (`ERR_P2SN_FRAME_TOO_LONG`,
 *   `ERR_P2SN_TRUNCATED`, a frame holding `0x04`);
 * - `destroy()` closes quietly and destroys `duplex`; after `end()`, it first lets the frames
 *   written go out (a second at most), as a `HandshakeDuplex` that closes cleanly needs;
 * - `end()` half-closes: what was written goes out, then `duplex` is ended, and frames keep
 *   coming until the peer ends too;
 * - the peer's end ends the readable side (`'end'`) and nothing else: frames written after it
 *   still go out, until this side ends as well;
 * - once both sides have ended, `duplex` is destroyed and the result closes. `'finish'` comes
 *   only then, not when this side's last frame is out, since pumpify's chain is done only once
 *   both directions are.
 *
 * Half-closing needs a socket that does not end itself when the peer ends: make it with
 * `allowHalfOpen: true`, as `connect()` and servers do. The message layers above, chained with
 * pumpify as below, are another matter: pumpify tears a chain down as soon as its last stream
 * has finished, here at the peer's end, so such a channel should end its side first (as a client
 * does when its requests are answered), or have written everything by the time the peer ends.
 *
 * @param duplex - the byte stream: a TCP or TLS socket, `joinDuplex(...)` of stdio
 * @param options - limits of the frames received; see {@link FrameSplitterOptions}
 * @returns an object-mode duplex of frames (Buffers)
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` for an option out of range (`duplex` is then
 *   destroyed, not left open)
 *
 * @example
 * // A channel composed by hand: the handshake over the frames, then the message layers
 * const socket = net.connect({ port: 7000, allowHalfOpen: true })
 * const handshake = new HandshakeDuplex(frameDuplex(socket), { role: 'client', keyPair })
 * const [peer] = await once(handshake, 'handshake')
 * const channel = new Pumpify.obj(
 *   RsaCipher.encryptor(peer.publicKey), Base64Codec.encoder(),
 *   handshake,
 *   Base64Codec.decoder(), RsaCipher.decryptor(keyPair.privateKey)
 * )
 * channel.write('hello')
 */
export function frameDuplex (duplex: NodeDuplex, options: FrameSplitterOptions = {}): Duplex {
  let splitter: FrameSplitter
  try {
    if (typeof duplex?.write !== 'function' || typeof duplex.pipe !== 'function' || typeof duplex.on !== 'function') {
      throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'frameDuplex() takes a duplex byte stream, such as a socket')
    }
    splitter = new FrameSplitter(options)
  } catch (err) {
    // Nothing is built on the stream yet: do not leave it open behind a thrown error.
    if (typeof duplex?.destroy === 'function') duplex.destroy()
    throw err
  }
  const framed = new FramedDuplex(duplex)
  // Before the chain listens (pump would pass the socket's error on as it is): the connection's
  // failure becomes ours, named, and an error of the socket after the end never goes unheard.
  duplex.on('error', (err: Error) => {
    framed.destroy(toP2snError(err, 'ERR_P2SN_CONNECTION', `the connection failed: ${err.message}`))
  })
  framed.setPipeline(new FrameJoiner(), duplex, splitter, new PeerEndGate(duplex))
  // Like a socket, close once both directions are done; pumpify alone never emits 'close'.
  // On the next tick, so that every listener of the last of the two events runs first.
  let done = 0
  const closeWhenDone = (): void => {
    if (++done === 2) process.nextTick(() => framed.destroy())
  }
  framed.once('end', closeWhenDone)
  framed.once('finish', closeWhenDone)
  return framed
}

/** The chain {@link frameDuplex} returns: pumpify's, with a destroy() that lets an end go out first. */
class FramedDuplex extends FrameChain {
  readonly #socket: WriteSide
  #lingering = false

  constructor (socket: WriteSide) {
    super()
    this.#socket = socket
    // pump tears the chain down only while its first stream is still open: once end() has gone
    // through the joiner, destroying the chain would leave the socket open.
    this.once('close', () => { if (!socket.destroyed) socket.destroy() })
  }

  /**
   * Tears the chain down, socket included. A clean destroy after end(), which a HandshakeDuplex
   * does as soon as it has ended and handed over its last frame, would cut off what is still on
   * its way to the socket (frames waiting in the chain while the peer reads slowly): wait for
   * the socket to finish writing, or close, or {@link DESTROY_LINGER}, whichever comes first. The
   * chain stays up meanwhile, since pumpify drops every write made once it is destroyed.
   */
  override destroy (error?: Error): this {
    const socket = this.#socket
    if (error !== undefined && error !== null) return super.destroy(error)
    if (this.#lingering) return this
    if (this.destroyed || !ending(this) || socket.destroyed || writingDone(socket)) return super.destroy()
    this.#lingering = true
    const go = (): void => {
      clearTimeout(timer)
      socket.removeListener('finish', go)
      socket.removeListener('close', go)
      super.destroy()
    }
    const timer = setTimeout(go, DESTROY_LINGER)
    timer.unref()
    socket.once('finish', go)
    socket.once('close', go)
    return this
  }
}

/** True once end() was called on a stream of readable-stream 3, which has no `writableEnded`. */
function ending (stream: object): boolean {
  return (stream as { _writableState?: { ending?: boolean } })._writableState?.ending === true
}

/** What {@link PeerEndGate} and {@link FramedDuplex} watch of the byte duplex. */
interface WriteSide {
  readonly destroyed: boolean
  destroy (): unknown
  readonly writableFinished?: boolean
  once (event: 'finish' | 'close', listener: () => void): unknown
  removeListener (event: 'finish' | 'close', listener: () => void): unknown
}

/**
 * The last stream of the chain: passes each frame on as it is. pump calls a chain done as soon
 * as its last stream has finished, and destroys whatever is still open. The splitter finishes
 * when the peer ends; were it last, the peer's end would destroy the socket while this side
 * still writes to it. This stream ends its readable side as soon as the frames stop, so the
 * reader sees `'end'` at once, but finishes only once the socket has finished writing (or
 * closed): the chain is done when both directions are.
 */
class PeerEndGate extends StreamDuplex {
  readonly #socket: WriteSide
  /** The callback of the frame that filled the reader's buffer, given back when it reads. */
  #held: Callback | undefined

  constructor (socket: WriteSide) {
    super({ objectMode: true, highWaterMark: MESSAGE_HIGH_WATER_MARK })
    this.#socket = socket
  }

  override _write (frame: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    if (this.push(frame)) callback()
    else this.#held = callback
  }

  override _read (): void {
    const callback = this.#held
    this.#held = undefined
    callback?.()
  }

  override _final (callback: Callback): void {
    this.push(null)
    const socket = this.#socket
    if (socket.destroyed || writingDone(socket)) {
      callback()
      return
    }
    const done = (): void => {
      socket.removeListener('finish', done)
      socket.removeListener('close', done)
      callback()
    }
    socket.once('finish', done)
    socket.once('close', done)
  }

  override _destroy (err: Error | null, callback: (error: Error | null) => void): void {
    this.#held = undefined
    callback(err)
  }
}

/** True once `stream` has finished writing; a stream of readable-stream 3 says so only in its state. */
function writingDone (stream: WriteSide): boolean {
  return stream.writableFinished === true ||
    (stream as { _writableState?: { finished?: boolean } })._writableState?.finished === true
}
