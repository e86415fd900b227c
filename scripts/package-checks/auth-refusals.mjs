// The authenticated mode's refusals, on this runtime: a plain P2SN client, and a client whose
// certificate the server's `ca` does not sign, are refused with ERR_P2SN_AUTHENTICATION by the
// server (and their requests fail); a client the `ca` signs gets its reply. Nothing may stall.
// (Each client is destroyed, not ended, after its attempt: the server may then report it as
// ERR_P2SN_TRUNCATED, as it should; only the refusals' codes are checked.)
import { connect, createServer, generateKeyPair, selfSignedCertificate } from 'p2sn'

const serverKeys = await generateKeyPair({ bits: 2048 })
const admitted = await generateKeyPair({ bits: 2048 })
const stranger = await generateKeyPair({ bits: 2048 })

function attempt (serverOptions, clientOptions) {
  return new Promise((resolve) => {
    const server = createServer({ keyPair: serverKeys, authenticate: true, ...serverOptions, handler: (m) => m })
    const seen = { serverError: undefined, reply: undefined, clientError: undefined }
    server.on('clientError', (err) => { seen.serverError ??= err.code })
    server.listen(0, '127.0.0.1', () => {
      const channel = connect({ host: '127.0.0.1', port: server.address().port, ...clientOptions })
      const stalled = setTimeout(() => { seen.clientError = 'STALLED'; channel.destroy() }, 15000)
      channel.on('error', () => {})
      channel.request('ping').then(
        (reply) => { seen.reply = reply.toString() },
        (err) => { seen.clientError ??= err.code }
      ).finally(() => {
        clearTimeout(stalled)
        channel.destroy()
        // The server's clientError may come a moment after the client's failure.
        setTimeout(() => { server.close(); resolve(seen) }, 300)
      })
    })
  })
}

const ca = { tls: { ca: selfSignedCertificate(admitted) } }
const results = {
  plain: await attempt({}, { keyPair: stranger }),
  refused: await attempt(ca, { keyPair: stranger, authenticate: true }),
  admitted: await attempt(ca, { keyPair: admitted, authenticate: true })
}
console.log(JSON.stringify(results))
const refused = (r) => r.serverError === 'ERR_P2SN_AUTHENTICATION' && r.reply === undefined && r.clientError !== 'STALLED'
const ok = refused(results.plain) && refused(results.refused) && results.admitted.reply === 'ping'
console.log(ok ? 'auth refusals ok' : 'auth refusals WRONG')
process.exit(ok ? 0 : 1)
