/**
 * A bare P2SN, for the benchmarks' ceilings: the same crypto as a channel (the core's
 * `encryptMessage`, `decryptMessage` with implicit rejection, `decryptsTo` for the key check),
 * written straight over `node:net` sockets and plain function calls, with no streams, timers,
 * limits or error handling of ours. No channel can be faster than this on the same machine,
 * so its ratio to the OpenSSL bound shows how much of a target the platform leaves.
 * Not for use: it trusts its peer completely.
 */
import { once } from 'node:events'
import net from 'node:net'
import { KEYCHECK, PUBKEY } from '../lib/core/handshake.js'
import { decryptMessage, decryptsTo, encryptMessage } from '../lib/core/rsa-message.js'
import { parsePublicKey, type KeyPair, type PublicKey } from '../lib/keys.js'
import { resolveEngine } from '../lib/rsa-engine.js'

const END = 0x04
const openssl = resolveEngine('openssl')

/** Base64 of `bytes`, ended by 0x04. */
function frameOf (bytes: Buffer): Buffer {
  return Buffer.from(`${bytes.toString('base64')}\x04`, 'latin1')
}

/** Calls `onFrame` with each frame's payload, Base64 decoded or raw, as bytes arrive. */
function onFrames (socket: net.Socket, onFrame: (payload: Buffer) => void): void {
  let pending: Buffer = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    for (let end = pending.indexOf(END); end !== -1; end = pending.indexOf(END)) {
      onFrame(pending.subarray(0, end))
      pending = pending.subarray(end + 1)
    }
  })
}

const decoded = (payload: Buffer): Buffer => Buffer.from(payload.toString('latin1'), 'base64')

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
        if (decryptsTo(keys.privateKey, decoded(payload), KEYCHECK, openssl)) socket.write(Buffer.from([...PUBKEY, END]))
        else socket.destroy()
      }
      else if (step === 5) {
        peer = parsePublicKey(decoded(payload))
        socket.write(frameOf(encryptMessage(peer, KEYCHECK)))
      } else {
        socket.write(frameOf(encryptMessage(peer!, decryptMessage(keys, decoded(payload)))))
      }
      step = Math.min(step + 2, 7)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { port: (server.address() as net.AddressInfo).port, close: () => { server.close() } }
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
      server = parsePublicKey(decoded(payload))
      socket.write(frameOf(encryptMessage(server, KEYCHECK)))
    } else if (step === 4) {
      socket.write(ownKeyFrame)
    } else if (step === 6) {
      if (!decryptsTo(keys.privateKey, decoded(payload), KEYCHECK, openssl)) socket.destroy()
      else handshaken?.()
    } else {
      const resolve = waiting
      waiting = undefined
      resolve?.(decryptMessage(keys, decoded(payload)))
    }
    step = Math.min(step + 2, 8)
  })
  const done = new Promise<void>((resolve) => { handshaken = resolve })
  await once(socket, 'connect')
  socket.write(Buffer.from([...PUBKEY, END]))
  await done
  return {
    request: async (message) => await new Promise<Buffer>((resolve) => {
      waiting = resolve
      socket.write(frameOf(encryptMessage(server!, message)))
    }),
    destroy: () => { socket.destroy() }
  }
}

/** One message through the bare chain: encrypted, framed, split, decoded, decrypted. */
export function bareChainMessage (keys: KeyPair, message: Buffer): Buffer {
  const frame = frameOf(encryptMessage(keys, message))
  return decryptMessage(keys, decoded(frame.subarray(0, frame.indexOf(END))))
}
