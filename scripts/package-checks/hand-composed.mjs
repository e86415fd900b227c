// A client composed by hand, as in examples/hand-composed.ts and README "Composing a channel by
// hand": frameDuplex + HandshakeDuplex + the cipher and Base64 layers in pumpify, against an
// ordinary createServer() echo server. Two requests (one of several RSA blocks), each reply
// checked, then this side ends first and the server's end ends the chain.
import assert from 'node:assert'
import { once } from 'node:events'
import net from 'node:net'
import Pumpify from 'pumpify'
import {
  Base64Codec, HandshakeDuplex, RsaCipher, createServer, frameDuplex, generateKeyPair,
  HANDSHAKE_FRAMES, MAX_HANDSHAKE_FRAME_LENGTH
} from 'p2sn'

const timer = setTimeout(() => { console.error('hand-composed: timed out'); process.exit(1) }, 45000)

const server = createServer({ handler: (message) => `echo: ${message}` })
await new Promise((resolve, reject) => {
  server.once('error', reject)
  server.listen(0, '127.0.0.1', resolve)
})
const { port } = server.address()

const keyPair = await generateKeyPair({ bits: 2048 })
const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true })
const frames = frameDuplex(socket, { leadingFrames: HANDSHAKE_FRAMES, maxLeadingFrameLength: MAX_HANDSHAKE_FRAME_LENGTH })
const handshake = new HandshakeDuplex(frames, { role: 'client', keyPair })
const [peer] = await once(handshake, 'handshake')
assert.strictEqual(peer.fingerprint, (await server.keyPair()).publicKey.fingerprint, 'the server key seen is not the server\'s')

const channel = new Pumpify.obj(
  RsaCipher.encryptor(peer.publicKey), Base64Codec.encoder(),
  handshake,
  Base64Codec.decoder(), RsaCipher.decryptor(keyPair)
)
const replies = []
channel.on('data', (reply) => replies.push(reply.toString()))
const ended = once(channel, 'end')

const long = 'x'.repeat(600) // three blocks at 2048 bits
channel.write('hello')
channel.write(long)
channel.end()
await ended
assert.deepStrictEqual(replies, ['echo: hello', `echo: ${long}`])
server.close()
clearTimeout(timer)
console.log(`hand-composed ok: ${replies.length} replies, first "${replies[0]}"`)
