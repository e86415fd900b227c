// The public API used with its types, as a strict TypeScript consumer would. Compiled with
// `tsc --noEmit` (strict, no skipLibCheck) under `nodenext` and under `bundler` resolution;
// never run. Every annotation here is a claim about the published declarations.
import { once } from 'node:events'
import net, { type AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import {
  connect, createServer, generateKeyPair, wrap, frameDuplex, HandshakeDuplex, RsaCipher,
  Base64Codec, FrameSplitter, FrameJoiner, P2snError, type PeerInfo
} from 'p2sn'

/** `true` when T is `any`. */
type IsAny<T> = 0 extends 1 & T ? true : false

/**
 * Fails to compile when `value` is `any`: an assignment such as `const p: PeerInfo = peer`
 * also passes for `any`, which would hide an untyped event.
 */
function expectNotAny<T> (value: T, check: IsAny<T> extends true ? 'this value is any, not a declared type' : null): T {
  void check
  return value
}

export async function consumer (): Promise<void> {
  const keyPair = await generateKeyPair({ bits: 2048 })
  const fingerprint: string = keyPair.publicKey.fingerprint

  const server = createServer({ keyPair, handler: (message: Buffer) => `you said ${message.toString()}` })
  server.listen(0, '127.0.0.1', () => { console.log('listening') })
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo

  const channel = connect({ host: '127.0.0.1', port })
  channel.on('handshake', (peer) => {
    const p: PeerInfo = peer
    expectNotAny(peer, null)
    const fp: string = p.fingerprint
    const role: 'client' | 'server' = p.role
    const authenticated: boolean = p.authenticated
    console.log(fp === fingerprint, role, authenticated, p.publicKey.bits)
  })
  const reply: Buffer = await channel.request('hello')
  console.log(reply.toString('utf8'))
  const written: boolean = channel.write('a message')
  console.log(written)
  channel.end()
  for await (const m of channel) {
    console.log(String(m))
  }

  // wrap() around any byte duplex.
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  const wrapped = wrap(socket, { role: 'client', keyPair })
  const [peer] = await once(wrapped, 'handshake') as [PeerInfo]
  console.log(peer.fingerprint, wrapped.remoteFingerprint)
  wrapped.destroy()

  // The layers, by hand.
  const frames = frameDuplex(net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }))
  const handshake = new HandshakeDuplex(frames, { role: 'client', keyPair })
  handshake.on('handshake', (info: PeerInfo) => {
    const encryptor = RsaCipher.encryptor(info.publicKey)
    encryptor.pipe(Base64Codec.encoder()).pipe(handshake)
    handshake.pipe(Base64Codec.decoder()).pipe(RsaCipher.decryptor(keyPair))
    encryptor.end('hi')
  })

  const splitter = new FrameSplitter({ maxFrameLength: 1024 })
  const joiner = new FrameJoiner()
  const sink = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      console.log(chunk.length)
      callback()
    }
  })
  splitter.pipe(joiner).pipe(sink)
  splitter.end(Buffer.from('frame\x04'))

  try {
    connect({ host: '127.0.0.1', port: -1 })
  } catch (err) {
    if (err instanceof P2snError) {
      const code: string = err.code
      console.log(code, err.message)
    }
  }
  server.close()
}
