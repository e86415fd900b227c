import crypto from 'node:crypto'
import { connect, createServer, generateKeyPair } from '../lib/index.ts'
const s = await generateKeyPair({ bits: 2048 }), c = await generateKeyPair({ bits: 2048 })
const server = createServer({ keyPair: s, handler: (m) => m })
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
const ch = connect({ port: (server.address() as {port: number}).port, keyPair: c })
const M = crypto.randomBytes(100)
await ch.request(M)
const t = process.hrtime.bigint(); const N = 3000
for (let i = 0; i < N; i++) await ch.request(M)
console.log('per trip us', Number(process.hrtime.bigint() - t) / N / 1000)
ch.destroy(); server.close()
