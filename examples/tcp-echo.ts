// A P2SN echo server and a client on loopback TCP, with request/reply.
import type { AddressInfo } from 'node:net'
import { connect, createServer } from 'p2sn'

// With no keyPair, each side generates a fresh 2048-bit key.
const server = createServer({ handler: (message) => message })

server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address() as AddressInfo
  const channel = connect({ host: '127.0.0.1', port })
  channel.on('handshake', (peer) => console.log('server key:', peer.fingerprint))

  for (const text of ['hello', 'wörld', 'x'.repeat(1000)]) {
    const reply = await channel.request(text)
    console.log('reply:', reply.length > 40 ? `${reply.length} bytes` : reply.toString())
  }
  channel.end()
  server.close()
})
