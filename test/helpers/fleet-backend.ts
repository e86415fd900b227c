/**
 * One backend of the fleet tests (test/haproxy.test.ts), run as its own process:
 * `node --import tsx fleet-backend.ts PORT KEY_FILE NAME`. A p2sn server with proxyProtocol whose
 * handler answers `NAME ADDRESS:PORT MESSAGE` (the client's address as the PROXY header gave
 * it). It prints "ready" once listening, and drains on SIGTERM (server.close()), exiting 0 once
 * every connection is gone; a second SIGTERM forces it (exit 143).
 */
import fs from 'node:fs'
import { createServer, parsePrivateKey } from '../../lib/index.js'

const [port, keyFile, name] = process.argv.slice(2) as [string, string, string]
const server = createServer({
  keyPair: parsePrivateKey(fs.readFileSync(keyFile, 'utf8')),
  proxyProtocol: true,
  drainTimeout: 5000,
  handler: (message, channel) => `${name} ${channel.remoteAddress}:${channel.remotePort} ${message.toString()}`
})
server.on('clientError', () => {})
server.listen(Number(port), '127.0.0.1', () => { process.stdout.write('ready\n') })
process.once('SIGTERM', () => {
  process.once('SIGTERM', () => { process.exit(143) })
  server.close(() => { process.exit(0) })
})
