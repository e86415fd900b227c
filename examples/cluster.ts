// A P2SN server on every core with node:cluster: the primary makes (or loads) the key once,
// and each worker process serves the same port with it, so clients see one server key.
import cluster from 'node:cluster'
import { once } from 'node:events'
import { availableParallelism } from 'node:os'
import { connect, createServer, generateKeyPair, parsePrivateKey, toPem, type PeerInfo } from 'p2sn'

const PORT = Number(process.env.PORT ?? 7100)
const WORKERS = Number(process.env.WORKERS ?? availableParallelism())

if (cluster.isPrimary) {
  const pem = toPem(await generateKeyPair()) // in production: read `p2sn keygen --out` output
  const workers = Array.from({ length: WORKERS }, () => cluster.fork({ P2SN_KEY: pem }))
  await Promise.all(workers.map(async (worker) => once(worker, 'listening')))

  const pids = new Set<string>()
  const keys = new Set<string>()
  for (let i = 0; i < 2 * WORKERS; i++) {
    const channel = connect({ port: PORT })
    channel.once('handshake', (peer: PeerInfo) => keys.add(peer.fingerprint))
    pids.add((await channel.request('which process are you?')).toString())
    channel.end()
  }
  console.log(`${2 * WORKERS} connections, answered by ${pids.size} worker processes, ${keys.size} server key`)
  for (const worker of workers) worker.kill()
} else {
  const server = createServer({ keyPair: parsePrivateKey(process.env.P2SN_KEY!), handler: () => String(process.pid) })
  server.listen(PORT, '127.0.0.1')
}
