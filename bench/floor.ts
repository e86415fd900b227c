/**
 * Floors for the round-trip and handshake benchmarks: the work any P2SN has to do on this
 * platform, done in one loop as a real exchange does it, with no protocol code around it. For a
 * round trip, the crypto and Base64 of a message each way (the padding checked) and one frame
 * each way over loopback TCP; for a handshake, its RSA work in a six-frame exchange of the real
 * sizes on a new loopback connection. Nothing is parsed, checked or kept beyond what the next
 * step needs.
 *
 * They differ from the parts that the round-trip bench times alone: measured in one loop, they
 * pay for the mix. On this machine the network part of an exchange is slower right after a
 * stretch of other work: a handshake's six frames on a new connection took 589–614 µs alone,
 * 250–430 µs more after 1.7 ms of RSA, and 140–280 µs more after as long a JavaScript loop
 * (three runs). A floor is not a bound either: the drift moves it as much as any ratio.
 * Not for use: it trusts its peer completely.
 */
import { once } from 'node:events'
import net from 'node:net'
import { decodeBase64, encodeBase64 } from '../lib/core/base64.js'
import { encodeFrame } from '../lib/core/frame-encoder.js'
import { KEYCHECK, PUBKEY } from '../lib/core/handshake.js'
import { decryptMessage, decryptsTo, encryptMessage } from '../lib/core/rsa-message.js'
import type { KeyPair } from '../lib/keys.js'
import { resolveEngine } from '../lib/rsa-engine.js'
import { listenLocal } from '../test/helpers/net.js'
import type { Workload } from './measure.js'

const openssl = resolveEngine('openssl')

/** A contender with a server behind it, to close after the run. */
export interface Served {
  run: Workload
  close: () => void
}

/**
 * A plain TCP echo over loopback; its contender sends a message of `bytes` at a time, each
 * waiting for its echo, and calls `between` before and after each (the floor's crypto).
 */
export async function loopbackEcho (bytes: number, between: () => void = () => {}): Promise<Served> {
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {})
    socket.pipe(socket)
  })
  const socket = net.connect({ port: await listenLocal(server), host: '127.0.0.1', noDelay: true })
  await once(socket, 'connect')
  socket.on('error', () => {})
  const message = Buffer.alloc(bytes, 0x41)
  let owed = 0
  let back: (() => void) | undefined
  socket.on('data', (chunk: Buffer) => {
    owed -= chunk.length
    if (owed === 0) back?.()
  })
  const trip = async (): Promise<void> => new Promise<void>((resolve) => {
    owed = bytes
    back = resolve
    socket.write(message)
  })
  return {
    run: async (count) => {
      for (let i = 0; i < count; i++) {
        between()
        await trip()
        between()
      }
    },
    close: () => { socket.destroy(); server.close() }
  }
}

/**
 * The round-trip floor: per unit, a message encrypted, Base64-encoded and back, and decrypted
 * (the padding checked), one frame of `frameBytes` each way over loopback, and the reply the
 * same way as the message.
 */
export async function roundTripFloor (keys: KeyPair, message: Buffer, frameBytes: number): Promise<Served> {
  return loopbackEcho(frameBytes, () => {
    if (decryptMessage(keys, decodeBase64(encodeBase64(encryptMessage(keys, message)))).length !== message.length) throw new Error('a message came back changed')
  })
}

/**
 * Calls `onFrame` once per frame that ends in a chunk: the floor's frames each come whole or
 * in pieces, and only the last piece ends in the terminator.
 */
function onFrames (socket: net.Socket, onFrame: (frame: Buffer) => void): void {
  let pending: Buffer[] = []
  socket.on('data', (chunk: Buffer) => {
    pending.push(chunk)
    if (chunk[chunk.length - 1] !== 0x04) return
    const frame = pending.length === 1 ? chunk : Buffer.concat(pending)
    pending = []
    onFrame(frame.subarray(0, frame.length - 1))
  })
}

/**
 * The handshake floor: per unit, a new loopback connection carrying the six frames of a
 * handshake, with its RSA work where the protocol does it (the client encrypts its key check
 * to the server's key, which decrypts it; then the other way), and the client's socket closed.
 */
export async function handshakeFloor (serverKeys: KeyPair, clientKeys: KeyPair): Promise<Served> {
  const pubkey = encodeFrame(PUBKEY)
  const serverKeyFrame = encodeFrame(encodeBase64(Buffer.from(serverKeys.publicKey.toPem())))
  const clientKeyFrame = encodeFrame(encodeBase64(Buffer.from(clientKeys.publicKey.toPem())))
  const keyCheckTo = (keys: KeyPair): Buffer => encodeFrame(encodeBase64(encryptMessage(keys.publicKey, KEYCHECK)))
  const checks = (keys: KeyPair, frame: Buffer): boolean => decryptsTo(keys.privateKey, decodeBase64(frame), KEYCHECK, openssl)
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {})
    let step = 1
    onFrames(socket, (frame) => {
      if (step === 1) socket.write(serverKeyFrame)
      else if (step === 3 && !checks(serverKeys, frame)) socket.destroy()
      else if (step === 3) socket.write(pubkey)
      else if (step === 5) socket.write(keyCheckTo(clientKeys))
      step += 2
    })
  })
  const port = await listenLocal(server)
  const handshake = async (): Promise<void> => new Promise<void>((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
    socket.on('error', reject)
    socket.on('close', () => { reject(new Error('the server closed the connection')) })
    let step = 2
    onFrames(socket, (frame) => {
      if (step === 2) socket.write(keyCheckTo(serverKeys))
      else if (step === 4) socket.write(clientKeyFrame)
      else if (checks(clientKeys, frame)) {
        socket.destroy()
        resolve()
      } else {
        reject(new Error('the key check failed'))
      }
      step += 2
    })
    socket.write(pubkey)
  })
  return {
    run: async (count) => { for (let i = 0; i < count; i++) await handshake() },
    close: () => { server.close() }
  }
}
