// Bad options and late calls fail at once, with a code, and leave nothing open behind them.
import { expect } from 'chai'
import { once } from 'node:events'
import net from 'node:net'
import { PassThrough } from 'node:stream'
import { P2snError, connect, createClient, createServer, generateKeyPair, wrap, type KeyPair } from '../lib/index.js'
import { duplexPair } from './helpers/duplex-pair.js'
import { expectP2snError, expectP2snErrorSync } from './helpers/errors.js'
import { listenLocal } from './helpers/net.js'
import { delay } from './helpers/timing.js'

describe('options and late calls', function () {
  this.timeout(20_000)
  let keys: KeyPair

  before(async () => { keys = await generateKeyPair({ bits: 1024 }) })

  it('connect() with a bad key, encoding or limit throws before it dials: no socket, no late error', async () => {
    const server = net.createServer()
    let connections = 0
    server.on('connection', (socket) => { connections++; socket.destroy() })
    const port = await listenLocal(server)
    const late: unknown[] = []
    const onUncaught = (err: unknown): void => { late.push(err) }
    process.on('uncaughtException', onUncaught)
    try {
      expectP2snErrorSync(() => connect({ port, keyPair: 'not a key' }), 'ERR_P2SN_BAD_KEY')
      // @ts-expect-error: a wrong value on purpose
      expectP2snErrorSync(() => connect({ port, keyPair: keys, serverKeyEncoding: 'hex' }), 'ERR_P2SN_INVALID_ARGUMENT')
      expectP2snErrorSync(() => connect({ port: 1, keyPair: keys, maxFrameLength: 10 }), 'ERR_P2SN_INVALID_ARGUMENT')
      await delay(200)
    } finally {
      process.removeListener('uncaughtException', onUncaught)
      server.close()
    }
    expect(connections).to.equal(0)
    expect(late).to.deep.equal([])
  })

  it('wrap() with a bad role or key throws and destroys the stream it was given', () => {
    for (const options of [{ role: 'peer', keyPair: keys }, { role: 'client', keyPair: 'not a key' }]) {
      const duplex = new PassThrough()
      // @ts-expect-error: wrong values on purpose
      expect(() => wrap(duplex, options)).to.throw(P2snError)
      expect(duplex.destroyed).to.equal(true)
    }
  })

  describe('options are read by name, inherited ones too, by every way in', function () {
    /** `own` over a prototype whose verifyPeer refuses every peer. */
    function refusing<T extends object> (own: T): T {
      return Object.assign(Object.create({ verifyPeer: () => false }) as object, own) as T
    }

    it('wrap()', async () => {
      const [a, b] = duplexPair({ chunking: 'whole' })
      const client = wrap(a, refusing({ role: 'client' as const, keyPair: keys }))
      const server = wrap(b, { role: 'server', keyPair: keys })
      server.on('error', () => {})
      await expectP2snError(once(client, 'handshake'), 'ERR_P2SN_PEER_REJECTED')
      server.destroy()
    })

    it('connect()', async () => {
      const server = createServer({ keyPair: keys, handler: (m) => m })
      server.on('clientError', () => {})
      const client = connect(refusing({ port: await listenLocal(server), keyPair: keys }))
      await expectP2snError(once(client, 'handshake'), 'ERR_P2SN_PEER_REJECTED')
      await new Promise((resolve) => server.close(resolve))
    })

    it('createServer()', async () => {
      const server = createServer(refusing({ keyPair: keys, handler: (m: Buffer) => m }))
      const refused = once(server, 'clientError')
      const client = connect({ port: await listenLocal(server), keyPair: keys })
      client.on('error', () => {})
      const [err] = await refused as [P2snError]
      expect(err).to.be.instanceOf(P2snError)
      expect(err.code).to.equal('ERR_P2SN_PEER_REJECTED')
      client.destroy()
      await new Promise((resolve) => server.close(resolve))
    })

    it('createClient()', async () => {
      const server = createServer({ keyPair: keys, handler: (m) => m })
      server.on('clientError', () => {})
      const client = createClient(refusing({ port: await listenLocal(server), keyPair: keys, reconnect: false }))
      const [reason] = await once(client, 'disconnect') as [P2snError]
      expect(reason).to.be.instanceOf(P2snError)
      expect(reason.code).to.equal('ERR_P2SN_PEER_REJECTED')
      await client.close()
      await new Promise((resolve) => server.close(resolve))
    })
  })

  it('request() after end() rejects with ERR_P2SN_CLOSED and emits no error', async () => {
    const server = createServer({ keyPair: keys, handler: (m) => m })
    const channel = connect({ port: await listenLocal(server), keyPair: keys })
    const errors: unknown[] = []
    channel.on('error', (err) => errors.push(err))
    expect((await channel.request('first')).toString()).to.equal('first')
    channel.end()
    await expectP2snError(channel.request('after end'), 'ERR_P2SN_CLOSED')
    channel.resume()
    if (!channel.destroyed) await once(channel, 'close')
    expect(errors).to.deep.equal([])
    await new Promise((resolve) => server.close(resolve))
  })
})
