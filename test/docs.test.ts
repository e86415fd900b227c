// The README documents what the code does: every error code, every option.
import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import { ERROR_CODES } from '../lib/index.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

describe('README', () => {
  it('lists every error code', () => {
    for (const code of ERROR_CODES) expect(readme, code).to.include(`\`${code}\``)
  })

  it('lists every channel and server option', () => {
    const options = [
      'keyPair', 'serverKeyEncoding', 'handshakeTimeout', 'verifyPeer', 'maxFrameLength', 'strict', 'rejection',
      'engine', 'trace', 'idleTimeout', 'workers', 'pool', 'handler', 'tls', 'maxConnections', 'maxPendingHandshakes'
    ]
    for (const option of options) expect(readme, option).to.match(new RegExp(`\\| \`${option}[(\`]`))
  })

  it('gives the two set-up commands', () => {
    expect(readme).to.include('npm install && npm start')
    expect(readme).to.include('npm test')
  })
})
