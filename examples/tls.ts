// P2SN inside plain server TLS: TLS checks the server's certificate against a CA, and P2SN
// encrypts each message to the peer's RSA key. Nothing here ties the P2SN keys to the
// certificate: for peers that prove their P2SN keys, see authenticated.ts.
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { connect, createServer } from 'p2sn'

const key = readFileSync(new URL('./certs/localhost.key', import.meta.url))
const cert = readFileSync(new URL('./certs/localhost.crt', import.meta.url))

const server = createServer({ tls: { key, cert }, handler: (message) => `tls echo: ${message.toString()}` })

server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address() as AddressInfo
  const channel = connect({ host: '127.0.0.1', port, tls: { ca: cert, servername: 'localhost' } })
  console.log((await channel.request('hello over tls')).toString())
  channel.end()
  server.close()
})
