// `npm start`: a P2SN server and client on loopback, showing every frame of the handshake and
// of a few messages as they cross the wire.
import type { AddressInfo } from 'node:net'
import { connect, createServer, generateKeyPair, type TraceEvent } from 'p2sn'

const explain: Record<string, string> = {
  'out PUBKEY': 'client asks for the server key',
  'in server key': 'server key: Base64 of its PKCS#1 PEM',
  'out KEYCHECK': 'P2SN:KEYCHECK, RSA-encrypted to the server key',
  'in PUBKEY': 'key check passed; server asks for ours',
  'out client key': 'client key: Base64 of its PKCS#1 PEM',
  'in KEYCHECK': 'P2SN:KEYCHECK, RSA-encrypted to the client key',
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
const server = createServer({ keyPair: serverKeys, handler: (m) => `Hello, ${m.toString()}!` })
server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address() as AddressInfo
  console.log(`server on 127.0.0.1:${port}, key ${serverKeys.publicKey.fingerprint}`)
  console.log(`client key ${clientKeys.publicKey.fingerprint}\n`)
  console.log('  #  direction        frame       size  first bytes on the wire   what it is')
  const channel = connect({ port, keyPair: clientKeys, trace: show })
  channel.on('handshake', (peer) => console.log(`     ── handshake complete: the server proved ${peer.fingerprint} ──`))
  for (const name of ['Ada', 'Grace']) {
    const reply = await channel.request(name)
    console.log(`     ── request "${name}" got reply "${reply.toString()}" ──`)
  }
  channel.end()
  server.close()
  console.log('\nEach frame ends in 0x04 (counted in the size). Now try the two ends in two terminals:')
  console.log('  npx p2sn listen 7000 --echo')
  console.log('  npx p2sn connect 127.0.0.1 7000        # type lines; each comes back')
})
