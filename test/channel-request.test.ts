/**
 * `channel.request()`'s timeout and what each failure says of its request (issue 13): a request
 * that timed out fails with `ERR_P2SN_REQUEST_TIMEOUT` and drops its channel; every failure
 * says in `err.sent` whether the request had gone out to the peer (it may have run) or never
 * left (safe to send again).
 */
import { once } from 'node:events'
import net from 'node:net'
import { expect } from 'chai'
import { connect, createServer, type Channel, type P2snError } from '../lib/index.js'
import { expectP2snError } from './helpers/errors.js'
import { listenLocal } from './helpers/net.js'
import { useLoopbackFixture } from './helpers/loopback.js'

describe('Channel.request: timeouts, and whether a failed request went out', function () {
  this.timeout(20_000)
  const fixture = useLoopbackFixture()
  const { closers } = fixture

  /** A server whose handler answers `reply(message, channel)`; its port. */
  async function serve (reply: (message: Buffer, channel: Channel) => Promise<string> | string): Promise<number> {
    const server = createServer({ keyPair: fixture.serverKeys, handler: reply })
    server.on('clientError', () => {})
    closers.push(() => { server.close() })
    return listenLocal(server)
  }

  function client (port: number): Channel {
    const channel = connect({ host: '127.0.0.1', port, keyPair: fixture.clientKeys })
    channel.on('error', () => {})
    closers.push(() => { channel.destroy() })
    return channel
  }

  it('a reply that does not come in time: ERR_P2SN_REQUEST_TIMEOUT with sent true; the channel is dropped, and a request queued behind it fails unsent', async () => {
    const port = await serve(async () => new Promise<string>(() => {}))
    const channel = client(port)
    await once(channel, 'handshake')
    const started = Date.now()
    const first = expectP2snError(channel.request('slow', { timeout: 300 }), 'ERR_P2SN_REQUEST_TIMEOUT')
    const second = expectP2snError(channel.request('queued'), 'ERR_P2SN_CLOSED')
    const timedOut = await first
    expect(Date.now() - started).to.be.within(250, 2000)
    expect(timedOut.sent).to.equal(true)
    expect((await second).sent).to.equal(false)
    if (!channel.destroyed) await once(channel, 'close')
  })

  it('a server that never completes the handshake: the request times out unsent', async () => {
    const silent = net.createServer((socket) => { socket.on('error', () => {}) })
    closers.push(() => { silent.close() })
    const port = await listenLocal(silent)
    const channel = client(port)
    const err = await expectP2snError(channel.request('hello', { timeout: 200 }), 'ERR_P2SN_REQUEST_TIMEOUT')
    expect(err.sent).to.equal(false)
    expect(err.message).to.include('never went out')
  })

  it('a server that hangs up after reading the request: ERR_P2SN_CLOSED with sent true, and the one behind it unsent', async () => {
    const port = await serve((_message, channel) => {
      channel.destroy()
      return new Promise<string>(() => {})
    })
    const channel = client(port)
    const first = expectP2snError(channel.request('one'), 'ERR_P2SN_CLOSED')
    const second = expectP2snError(channel.request('two'), 'ERR_P2SN_CLOSED')
    expect((await first).sent).to.equal(true)
    expect((await second).sent).to.equal(false)
  })

  it('a channel closed before the handshake: its request never went out', async () => {
    const port = await serve((message) => message.toString())
    const channel = client(port)
    const pending = expectP2snError(channel.request('hello'), 'ERR_P2SN_CLOSED')
    channel.destroy()
    expect((await pending).sent).to.equal(false)
    expect((await expectP2snError(channel.request('after'), 'ERR_P2SN_CLOSED')).sent).to.equal(false)
  })

  it('a reply within the timeout resolves, and the channel stays open past the timeout', async () => {
    const port = await serve((message) => `re: ${message.toString()}`)
    const channel = client(port)
    expect((await channel.request('hi', { timeout: 200 })).toString()).to.equal('re: hi')
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(channel.destroyed).to.equal(false)
    expect((await channel.request('again')).toString()).to.equal('re: again')
  })

  it('a handler failure says the request went out', async () => {
    const port = await serve(() => { throw new Error('boom') })
    const channel = client(port)
    const err: P2snError = await expectP2snError(channel.request('x'), 'ERR_P2SN_UNEXPECTED_ERROR')
    expect(err.sent).to.equal(true)
  })

  for (const timeout of [0, -1, 1.5, Number.NaN]) {
    it(`timeout ${timeout} is refused: ERR_P2SN_INVALID_ARGUMENT`, async () => {
      const port = await serve((message) => message.toString())
      const channel = client(port)
      await expectP2snError(channel.request('x', { timeout }), 'ERR_P2SN_INVALID_ARGUMENT')
    })
  }
})
