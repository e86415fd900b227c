/**
 * An RSA engine that fails is this side's trouble (issue 12): every such failure is a
 * `P2snError` `ERR_P2SN_ENGINE` with the engine's error as `cause` and a hint, and a handshake
 * that hits one never blames the peer (`ERR_P2SN_BAD_KEYCHECK`) nor answers `P2SN:ERRORKEY`.
 * A runtime whose `node:crypto` refuses raw RSA is played by making `crypto.privateDecrypt`
 * refuse `RSA_NO_PADDING`, as such a runtime does, and `RSA_PKCS1_PADDING` too: where OpenSSL
 * has implicit rejection (3.2 and later) the engine decrypts with that instead.
 */
import crypto from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import { expect } from 'chai'
import {
  connect, createServer, decryptMessage, encryptMessage, generateKeyPair, KEYWORD_ERRORKEY, P2snError, parsePublicKey,
  type KeyPair, type RsaEngine
} from '../lib/index.js'
import { expectP2snErrorSync } from './helpers/errors.js'
import { listenLocal } from './helpers/net.js'

const realPrivateDecrypt = crypto.privateDecrypt
const realPublicEncrypt = crypto.publicEncrypt

/** Makes this process's `node:crypto` refuse raw RSA, as some runtimes' does, until undone. */
function withoutRawRsa (): () => void {
  const refused = new Set([crypto.constants.RSA_NO_PADDING, crypto.constants.RSA_PKCS1_PADDING])
  crypto.privateDecrypt = ((key: crypto.RsaPrivateKey | crypto.KeyLike, buffer: NodeJS.ArrayBufferView) => {
    if (typeof key === 'object' && 'padding' in key && refused.has(key.padding!)) {
      throw new Error('RSA_NO_PADDING is not supported')
    }
    return realPrivateDecrypt(key, buffer)
  }) as typeof crypto.privateDecrypt
  return () => { crypto.privateDecrypt = realPrivateDecrypt }
}

/** A 2048-bit "RSA public key" whose modulus is even, as PKCS#1 PEM: OpenSSL loads it. */
function evenModulusKey (): string {
  const n = crypto.randomBytes(256)
  n[0]! |= 0x80
  n[255]! &= 0xfe
  const key = crypto.createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: 'AQAB' }, format: 'jwk' })
  return key.export({ type: 'pkcs1', format: 'pem' }) as string
}

describe('engine failures (ERR_P2SN_ENGINE)', function () {
  this.timeout(20000)
  let pair: KeyPair
  let undo: (() => void) | undefined

  before(async function () {
    pair = await generateKeyPair({ bits: 1024 })
  })

  afterEach(function () {
    undo?.()
    undo = undefined
    crypto.publicEncrypt = realPublicEncrypt
  })

  it('decryptMessage on a runtime without raw rsa: ERR_P2SN_ENGINE, the cause, and the hint to use forge', function () {
    const ciphertext = encryptMessage(pair, 'hello')
    undo = withoutRawRsa()
    const err = expectP2snErrorSync(() => decryptMessage(pair, ciphertext), 'ERR_P2SN_ENGINE')
    expect(err.message).to.include('this runtime\'s crypto lacks raw rsa; use engine: \'forge\'')
    expect((err.cause as Error).message).to.equal('RSA_NO_PADDING is not supported')
    // The hint works: the forge engine needs no raw RSA from node:crypto.
    expect(decryptMessage(pair, ciphertext, { engine: 'forge' }).toString()).to.equal('hello')
  })

  it('encryptMessage whose engine fails: ERR_P2SN_ENGINE with the cause', function () {
    const cause = new Error('no rsa here')
    crypto.publicEncrypt = (() => { throw cause }) as typeof crypto.publicEncrypt
    const err = expectP2snErrorSync(() => encryptMessage(pair, 'hello'), 'ERR_P2SN_ENGINE')
    expect(err.cause).to.equal(cause)
    expect(err.message).to.include('use engine: \'forge\'')
  })

  it('an engine of one\'s own that throws: ERR_P2SN_ENGINE naming it, both ways', function () {
    const broken: RsaEngine = {
      name: 'mine' as RsaEngine['name'],
      encryptBlock () { throw new TypeError('encrypt broke') },
      decryptRaw () { throw new TypeError('decrypt broke') }
    }
    const ciphertext = encryptMessage(pair, 'hello')
    const decrypting = expectP2snErrorSync(() => decryptMessage(pair, ciphertext, { engine: broken }), 'ERR_P2SN_ENGINE')
    expect(decrypting.message).to.include('mine').and.to.include('decrypt broke')
    expect(decrypting.cause).to.be.an.instanceof(TypeError)
    const encrypting = expectP2snErrorSync(() => encryptMessage(pair, 'hello', { engine: broken }), 'ERR_P2SN_ENGINE')
    expect(encrypting.message).to.include('encrypt broke')
  })

  it('a P2snError from an engine passes through as it is', function () {
    const own = new P2snError('ERR_P2SN_BAD_KEY', 'the key is gone')
    const engine: RsaEngine = { name: 'openssl', encryptBlock () { throw own }, decryptRaw () { throw own } }
    expect(expectP2snErrorSync(() => encryptMessage(pair, 'x', { engine }), 'ERR_P2SN_BAD_KEY')).to.equal(own)
  })

  it('over TCP, a server whose crypto lacks raw rsa fails with ERR_P2SN_ENGINE, sends no P2SN:ERRORKEY, and the client is not blamed', async function () {
    const server = createServer({ keyPair: pair, handler: (message) => message })
    const port = await listenLocal(server)
    const serverErrors: Error[] = []
    server.on('clientError', (err) => serverErrors.push(err))
    try {
      // A raw client: steps 1 and 3 by hand, so that nothing on its side needs raw RSA, and
      // every byte the server sends back is seen.
      undo = withoutRawRsa()
      const socket = net.connect({ port, host: '127.0.0.1' })
      const received: Buffer[] = []
      socket.on('data', (chunk: Buffer) => received.push(chunk))
      socket.write('P2SN:PUBKEY\x04')
      // Step 2: the server's key (raw PEM by default); then step 3, a good key check to it.
      while (!Buffer.concat(received).includes(4)) await once(socket, 'data')
      const keycheck = encryptMessage(pair.publicKey, 'P2SN:KEYCHECK').toString('base64')
      socket.write(`${keycheck}\x04`)
      await once(socket, 'close')
      expect(Buffer.concat(received).toString('latin1')).to.not.include(KEYWORD_ERRORKEY)
      expect(serverErrors).to.have.length(1)
      expect(serverErrors[0]).to.be.an.instanceof(P2snError)
      expect((serverErrors[0] as P2snError).code).to.equal('ERR_P2SN_ENGINE')
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('a key with an even modulus, which OpenSSL reads but cannot encrypt to, is refused as the key\'s fault: ERR_P2SN_BAD_KEY', function () {
    const pem = evenModulusKey()
    expectP2snErrorSync(() => parsePublicKey(pem), 'ERR_P2SN_BAD_KEY')
    expectP2snErrorSync(() => encryptMessage(pem, 'hello'), 'ERR_P2SN_BAD_KEY')
  })

  it('over TCP, a client that sends such a key at step 5 is refused with P2SN:ERRORKEY and ERR_P2SN_BAD_KEY, not ERR_P2SN_ENGINE', async function () {
    const server = createServer({ keyPair: pair, handler: (message) => message })
    const port = await listenLocal(server)
    const serverErrors: Error[] = []
    server.on('clientError', (err) => serverErrors.push(err))
    try {
      const socket = net.connect({ port, host: '127.0.0.1' })
      let received = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => { received = Buffer.concat([received, chunk]) })
      const frames = async (count: number): Promise<void> => {
        while (received.filter((byte) => byte === 4).length < count) await once(socket, 'data')
      }
      socket.write('P2SN:PUBKEY\x04')
      await frames(1)
      socket.write(`${encryptMessage(pair.publicKey, 'P2SN:KEYCHECK').toString('base64')}\x04`)
      await frames(2)
      socket.write(`${Buffer.from(evenModulusKey()).toString('base64')}\x04`)
      await once(socket, 'close')
      expect(received.toString('latin1').split('\x04')[2]).to.equal(KEYWORD_ERRORKEY)
      expect(serverErrors.map((err) => (err as P2snError).code)).to.deep.equal(['ERR_P2SN_BAD_KEY'])
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('over TCP with engine: \'forge\' on both sides, the same runtime handshakes and answers', async function () {
    undo = withoutRawRsa()
    const server = createServer({ keyPair: pair, engine: 'forge', handler: (message) => message })
    const port = await listenLocal(server)
    try {
      const channel = connect({ host: '127.0.0.1', port, keyPair: pair, engine: 'forge' })
      expect((await channel.request('hello')).toString()).to.equal('hello')
      channel.destroy()
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
