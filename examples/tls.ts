// P2SN inside TLS: TLS authenticates the server's certificate, P2SN encrypts each message
// end to end to the peer's RSA key.
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
