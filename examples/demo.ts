// `npm start`: a P2SN server and client on loopback, showing every frame of the handshake and
// of a few messages as they cross the wire; then the same inside the authenticated mode.
import type { AddressInfo } from 'node:net'
import { connect, createServer, generateKeyPair, type TraceEvent } from 'p2sn'

const explain: Record<string, string> = {
  'out PUBKEY': 'client asks for the server key',
  'in server key': 'server key: Base64 of its PKCS#1 PEM',
  'out KEYCHECK': 'P2SN:KEYCHECK, RSA-encrypted to the server key',
  'in PUBKEY': 'server asks for our key (anyone could send this)',
  'out client key': 'client key: Base64 of its PKCS#1 PEM',
  'in KEYCHECK': 'P2SN:KEYCHECK, RSA-encrypted to the client key (anyone could make it)',
  'out message': 'request, RSA-encrypted to the server key',
  'in message': 'reply, RSA-encrypted to the client key'
}
let step = 0
function show ({ direction, step: name, frame }: TraceEvent): void {
  const arrow = direction === 'out' ? 'client → server' : 'server → client'
  const start = frame.subarray(0, 24).toString('latin1').replace(/\n/g, '↵') + (frame.length > 24 ? '…' : '')
  console.log(`${String(++step).padStart(3)}  ${arrow}  ${name.padEnd(10)} ${String(frame.length + 1).padStart(4)} B  ${start.padEnd(25)}  ${explain[`${direction} ${name}`] ?? ''}`)
}

console.log('Generating two 2048-bit RSA keys…')
const [serverKeys, clientKeys] = await Promise.all([generateKeyPair(), generateKeyPair()])
const handler = (m: Buffer): string => `Hello, ${m.toString()}!`
const server = createServer({ keyPair: serverKeys, handler })
server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address() as AddressInfo
  console.log(`server on 127.0.0.1:${port}, key ${serverKeys.publicKey.fingerprint}`)
  console.log(`client key ${clientKeys.publicKey.fingerprint}\n`)
  console.log('  #  direction        frame       size  first bytes on the wire   what it is')
  const channel = connect({ port, keyPair: clientKeys, trace: show })
  channel.on('handshake', (peer) => console.log(`     ── handshake complete: the server presented ${peer.fingerprint}, a claim (authenticated: ${peer.authenticated}) ──`))
  for (const name of ['Ada', 'Grace']) {
    const reply = await channel.request(name)
    console.log(`     ── request "${name}" got reply "${reply.toString()}" ──`)
  }
  channel.end()
  server.close()
  console.log('\nEach frame ends in 0x04 (counted in the size). Nothing above proves a key: anyone who knows')
  console.log('the server\'s public key could have sent frames 2, 4 and 6. With authenticate: true, both')
  console.log('sides run the same frames inside mutual TLS 1.3 and prove the keys they present:')
  await authenticated()
  console.log('\nNow try the two ends in two terminals:')
  console.log('  npx p2sn listen 7000 --echo            # add --auth to both for the authenticated mode')
  console.log('  npx p2sn connect 127.0.0.1 7000        # type lines; each comes back')
})

async function authenticated (): Promise<void> {
  const secure = createServer({ keyPair: serverKeys, authenticate: true, handler })
  await new Promise<void>((resolve) => secure.listen(0, '127.0.0.1', resolve))
  const { port } = secure.address() as AddressInfo
  // The client pins the server's key: in this mode a match means the server holds that key.
  const pin = (peer: { fingerprint: string }): boolean => peer.fingerprint === serverKeys.publicKey.fingerprint
  const channel = connect({ port, keyPair: clientKeys, authenticate: true, verifyPeer: pin })
  channel.on('handshake', (peer) => console.log(`     ── the server proved ${peer.fingerprint} in TLS 1.3 (authenticated: ${peer.authenticated}) ──`))
  const reply = await channel.request('Alan')
  console.log(`     ── request "Alan" got reply "${reply.toString()}" ──`)
  channel.end()
  secure.close()
}
