/**
 * `npm run soak`: many clients, random message sizes up to several blocks, for a fixed time;
 * every reply checked and in order. P2SN_SOAK_SECONDS, P2SN_SOAK_CLIENTS and P2SN_SOAK_WORKERS
 * change the load.
 */
import { soak } from '../test/helpers/soak.js'

const seconds = Number(process.env.P2SN_SOAK_SECONDS ?? 60)
const clients = Number(process.env.P2SN_SOAK_CLIENTS ?? 100)
const workers = process.env.P2SN_SOAK_WORKERS === undefined ? undefined : Number(process.env.P2SN_SOAK_WORKERS)
const maxMessage = 1000 // five blocks to a 2048-bit server key, nine to a 1024-bit client key

console.log(`soak: ${clients} clients for ${seconds} s, messages of 0 to ${maxMessage} bytes, server ${workers === undefined ? 'inline' : `with ${workers} workers`}`)
const result = await soak({ clients, seconds, maxMessage, workers })
console.log(`  replies checked: ${result.messages.toLocaleString('en-US')} (${(result.bytes / 1e6).toFixed(1)} MB), ${(result.messages / seconds).toFixed(0)}/s`)
console.log(`  wrong or out of order: ${result.mismatches}`)
console.log(`  errors: ${result.errors.length === 0 ? 'none' : result.errors.join(', ')}`)
process.exitCode = result.mismatches === 0 && result.errors.length === 0 ? 0 : 1
