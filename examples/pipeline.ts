// The four layers composed by hand with pumpify, no handshake: seal messages to a public key
// into a file of frames, then open the file with the private key. A file is read and written
// apart, so each direction has its own chain; over a duplex such as a socket, frameDuplex()
// frames both directions at once (see hand-composed.ts).
import { createReadStream, createWriteStream, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import Pumpify from 'pumpify'
import { Base64Codec, FrameJoiner, FrameSplitter, RsaCipher, generateKeyPair } from 'p2sn'

const { publicKey, privateKey } = await generateKeyPair({ bits: 2048 })
const file = join(mkdtempSync(join(tmpdir(), 'p2sn-')), 'sealed.p2sn')

// messages → RSA → Base64 → 0x04-terminated frames → bytes
const seal = new Pumpify.obj(RsaCipher.encryptor(publicKey), Base64Codec.encoder(), new FrameJoiner())
// bytes → frames → Base64 → RSA → messages
const open = new Pumpify.obj(new FrameSplitter(), Base64Codec.decoder(), RsaCipher.decryptor(privateKey))

const done = pipeline(seal, createWriteStream(file))
for (const message of ['first secret', 'second secret', 'a'.repeat(600)]) seal.write(message)
seal.end()
await done

for await (const message of createReadStream(file).pipe(open)) {
  console.log('opened:', (message as Buffer).length > 40 ? `${(message as Buffer).length} bytes` : (message as Buffer).toString())
}
