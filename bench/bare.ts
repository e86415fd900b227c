/**
 * A bare P2SN, a reference point for the benchmarks: the same crypto as a channel (the core's
 * `encryptMessage`, `decryptMessage` with implicit rejection, `decryptsTo` for the key check),
 * and the core's frame codec, written straight over `node:net` sockets and plain function
 * calls, with no streams, timers or error handling of ours. Its ratio to the OpenSSL bound shows
 * what the core's pieces cost without the layers around them. It is not a ceiling: a review's
 * leaner P2SN (2048-bit keys only, keys read from DER without the further exports, frames cut
 * into strings, reads through `onread`) beat it by 5-13% on handshakes, 1-8% on the chain, and
 * about 3% on round trips on Node 20 (README, Benchmarks).
 * Not for use: it trusts its peer completely.
 */
import { once } from 'node:events'
import net from 'node:net'
import { decodeBase64, encodeBase64 } from '../lib/core/base64.js'
import { FrameDecoder } from '../lib/core/frame-decoder.js'
import { encodeFrame } from '../lib/core/frame-encoder.js'
import { KEYCHECK, PUBKEY } from '../lib/core/handshake.js'
import { decryptMessage, decryptsTo, encryptMessage } from '../lib/core/rsa-message.js'
import { parsePublicKey, type KeyPair, type PublicKey } from '../lib/keys.js'
import { DEFAULT_MAX_FRAME_LENGTH } from '../lib/protocol.js'
import { resolveEngine } from '../lib/rsa-engine.js'
import { listenLocal } from '../test/helpers/net.js'

const openssl = resolveEngine('openssl')

/** Base64 of `bytes`, as one frame. */
const frameOf = (bytes: Uint8Array): Buffer => encodeFrame(encodeBase64(bytes))

/** Calls `onFrame` with each frame's payload as bytes arrive: the core's decoder, no stream. */
function onFrames (socket: net.Socket, onFrame: (payload: Buffer) => void): void {
  const decoder = new FrameDecoder({ maxFrameLength: DEFAULT_MAX_FRAME_LENGTH })
  socket.on('data', (chunk: Buffer) => {
    decoder.write(chunk)
    for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) onFrame(frame)
  })
}

/** A bare echo server: the six handshake steps, then each message decrypted and sent back. */
export async function bareServer (keys: KeyPair): Promise<{ port: number, close: () => void }> {
  const keyFrame = frameOf(Buffer.from(keys.publicKey.toPem()))
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {})
    let step = 1
    let peer: PublicKey | undefined
    onFrames(socket, (payload) => {
      if (step === 1) socket.write(keyFrame)
      else if (step === 3) {
        if (decryptsTo(keys.privateKey, decodeBase64(payload), KEYCHECK, openssl)) socket.write(encodeFrame(PUBKEY))
        else socket.destroy()
      }
      else if (step === 5) {
        peer = parsePublicKey(decodeBase64(payload))
        socket.write(frameOf(encryptMessage(peer, KEYCHECK)))
      } else {
        socket.write(frameOf(encryptMessage(peer!, decryptMessage(keys, decodeBase64(payload)))))
      }
      step = Math.min(step + 2, 7)
    })
  })
  return { port: await listenLocal(server), close: () => { server.close() } }
}

/** A bare client: connects, runs the handshake, and gives request() and destroy(). */
export async function bareClient (port: number, keys: KeyPair): Promise<{ request: (message: Buffer) => Promise<Buffer>, destroy: () => void }> {
  const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
  socket.on('error', () => {})
  const ownKeyFrame = frameOf(Buffer.from(keys.publicKey.toPem()))
  let step = 2
  let server: PublicKey | undefined
  let handshaken: (() => void) | undefined
  let waiting: ((reply: Buffer) => void) | undefined
  onFrames(socket, (payload) => {
    if (step === 2) {
      server = parsePublicKey(decodeBase64(payload))
      socket.write(frameOf(encryptMessage(server, KEYCHECK)))
    } else if (step === 4) {
      socket.write(ownKeyFrame)
    } else if (step === 6) {
      if (!decryptsTo(keys.privateKey, decodeBase64(payload), KEYCHECK, openssl)) socket.destroy()
      else handshaken?.()
    } else {
      const resolve = waiting
      waiting = undefined
      resolve?.(decryptMessage(keys, decodeBase64(payload)))
    }
    step = Math.min(step + 2, 8)
  })
  const done = new Promise<void>((resolve) => { handshaken = resolve })
  await once(socket, 'connect')
  socket.write(encodeFrame(PUBKEY))
  await done
  return {
    request: async (message) => await new Promise<Buffer>((resolve) => {
      waiting = resolve
      socket.write(frameOf(encryptMessage(server!, message)))
    }),
    destroy: () => { socket.destroy() }
  }
}

/**
 * A bare chain: a function that takes one message through it (encrypted, framed, cut by one
 * decoder kept for all, as a stream's is, decoded, decrypted) and gives back what came out.
 */
export function bareChain (keys: KeyPair): (message: Buffer) => Buffer {
  const decoder = new FrameDecoder({ maxFrameLength: DEFAULT_MAX_FRAME_LENGTH })
  return (message) => {
    decoder.write(frameOf(encryptMessage(keys, message)))
    return decryptMessage(keys, decodeBase64(decoder.next()!))
  }
}
