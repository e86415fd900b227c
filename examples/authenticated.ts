// The authenticated mode: P2SN inside mutual TLS 1.3, each side proving the P2SN key it presents.
// The server admits one known client key; the client pins the server's key. In plain P2SN the
// same checks could be passed by anyone who knows those public keys.
import type { AddressInfo } from 'node:net'
import { connect, createServer, generateKeyPair, type P2snError } from 'p2sn'

const [serverKeys, aliceKeys, malloryKeys] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()])
const allowed = new Set([aliceKeys.publicKey.fingerprint])

const server = createServer({
  keyPair: serverKeys,
  authenticate: true,
  verifyPeer: (peer) => allowed.has(peer.fingerprint),
  handler: (message) => `hello, ${message.toString()}`
})
server.on('clientError', (err: P2snError) => console.log('server refused a client:', err.code))

server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address() as AddressInfo
  const pinServer = (peer: { fingerprint: string }): boolean => peer.fingerprint === serverKeys.publicKey.fingerprint

  const alice = connect({ port, keyPair: aliceKeys, authenticate: true, verifyPeer: pinServer })
  alice.on('handshake', (peer) => console.log('alice: server proven:', peer.authenticated))
  console.log('alice:', (await alice.request('alice')).toString())
  alice.end()

  const mallory = connect({ port, keyPair: malloryKeys, authenticate: true, verifyPeer: pinServer })
  mallory.on('error', (err: P2snError) => console.log('mallory:', err.code))
  mallory.on('close', () => { server.close() })
})
