// The README documents what the code does: every error code, every option.
import { expect } from 'chai'
import { readdirSync, readFileSync } from 'node:fs'
import { ERROR_CODES } from '../lib/index.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

describe('README', () => {
  it('lists every error code', () => {
    for (const code of ERROR_CODES) expect(readme, code).to.include(`\`${code}\``)
  })

  it('lists every channel and server option', () => {
    const options = [
      'keyPair', 'serverKeyEncoding', 'handshakeTimeout', 'verifyPeer', 'maxFrameLength', 'strict', 'rejection',
      'engine', 'trace', 'idleTimeout', 'workers', 'pool', 'handler', 'tls', 'maxConnections', 'maxPendingHandshakes',
      'authenticate', 'maxMessageBlocks'
    ]
    for (const option of options) expect(readme, option).to.match(new RegExp(`\\| \`${option}[(\`]`))
  })

  it('gives the two set-up commands', () => {
    expect(readme).to.include('npm install && npm start')
    expect(readme).to.include('npm test')
  })
})

// A review found the docs promising an authentication P2SN cannot give (issue 10): the handshake
// proves no key, so nothing we ship may say it does.
describe('claims about what the handshake proves', () => {
  const CLAIMS = [
    /handshake proves (that|possession)/i, /proves, with an encrypted/i, /proven at the key check/i,
    /once the peer is proven/i, /handshake complete: the server proved/i, /prove that the peer can decrypt/i,
    /key check passed/i
  ]

  function files (folder: string, ending: RegExp): string[] {
    return readdirSync(new URL(`../${folder}/`, import.meta.url), { recursive: true, encoding: 'utf8' })
      .filter((name) => ending.test(name)).map((name) => `${folder}/${name}`)
  }

  it('none in the README, SECURITY.md, the sources, the CLI help or the examples', () => {
    const checked = ['README.md', 'SECURITY.md', ...files('lib', /\.ts$/), ...files('examples', /\.ts$/)]
    for (const file of checked) {
      const text = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8')
      for (const claim of CLAIMS) expect(text, `${file} says ${String(claim)}`).not.to.match(claim)
    }
  })
})
