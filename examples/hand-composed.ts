// A client channel composed by hand around a TCP socket, with a layer of one's own in it, talking
// to an ordinary createServer(): what wrap() builds, laid out so that one can add to it.
import { once } from 'node:events'
import net, { type AddressInfo } from 'node:net'
import { Transform } from 'node:stream'
import Pumpify from 'pumpify'
import {
  Base64Codec, HandshakeDuplex, RsaCipher, createServer, frameDuplex, generateKeyPair,
  HANDSHAKE_FRAMES, MAX_HANDSHAKE_FRAME_LENGTH, type PeerInfo
} from 'p2sn'

const server = createServer({ handler: (message) => `echo: ${message}` })
await once(server.listen(0, '127.0.0.1'), 'listening')
const { port } = server.address() as AddressInfo

const keyPair = await generateKeyPair({ bits: 2048 })
// Half-open, so that end() half-closes: the replies still come in after it. No Nagle delay for
// small requests and replies, as connect() does.
const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true })
// Frames over the socket, the handshake's held to 8 KiB as wrap() does; then the handshake.
const frames = frameDuplex(socket, { leadingFrames: HANDSHAKE_FRAMES, maxLeadingFrameLength: MAX_HANDSHAKE_FRAME_LENGTH })
const handshake = new HandshakeDuplex(frames, { role: 'client', keyPair })
// The encryptor needs the server's key, which only the handshake gives.
const [peer] = await once(handshake, 'handshake') as [PeerInfo]
console.log('server key:', peer.fingerprint)

// The layer of one's own: here it counts the messages received.
let received = 0
const counter = new Transform({
  objectMode: true,
  transform (message: Buffer, _encoding, callback) {
    received++
    callback(null, message)
  }
})
const channel = new Pumpify.obj(
  RsaCipher.encryptor(peer.publicKey), Base64Codec.encoder(), // messages → Base64 ciphertext frames
  handshake, //                                                  frames ⇄ the socket
  Base64Codec.decoder(), RsaCipher.decryptor(keyPair), counter // frames → messages
)
channel.on('data', (reply: Buffer) => console.log('reply:', reply.length > 40 ? `${reply.length} bytes` : reply.toString()))
channel.on('end', () => {
  console.log(`${received} replies counted, then the server's end`)
  server.close()
})
for (const text of ['hello', 'wörld', 'x'.repeat(600)]) channel.write(text)
// A pumpify chain is done, and torn down, once its last stream is: at the server's end. So this
// side ends first, and the server ends once it has answered everything.
channel.end()
