// The package from CommonJS: require() of the ESM package (Node >= 20.19, Bun, Deno), then used:
// keys, a message encrypted and decrypted, Base64, and one request over loopback.
/* eslint-disable @typescript-eslint/no-require-imports -- this file is the CommonJS consumer */
'use strict'
const assert = require('node:assert')
const p2sn = require('p2sn')
const { generateKeyPair, encryptMessage, decryptMessage, encodeBase64, decodeBase64, createServer, connect, P2snError } = p2sn

for (const name of ['generateKeyPair', 'encryptMessage', 'decryptMessage', 'createServer', 'connect', 'P2snError']) {
  assert.strictEqual(typeof p2sn[name], 'function', `require('p2sn').${name} is ${typeof p2sn[name]}`)
}

async function main () {
  const keyPair = await generateKeyPair({ bits: 2048 })
  const ciphertext = encryptMessage(keyPair, 'from commonjs')
  assert.strictEqual(ciphertext.length, 256)
  assert.strictEqual(decryptMessage(keyPair, ciphertext).toString(), 'from commonjs')
  assert.strictEqual(decodeBase64(encodeBase64(Buffer.from('abc'))).toString(), 'abc')
  assert.throws(() => decodeBase64('not base64!'), (err) => err instanceof P2snError)

  const server = createServer({ keyPair, handler: (message) => `cjs ${message}` })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const channel = connect({ host: '127.0.0.1', port: server.address().port })
  const reply = (await channel.request('hello')).toString()
  assert.strictEqual(reply, 'cjs hello')
  channel.end()
  server.close()
  console.log(`commonjs ok: ${reply}`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
