/**
 * The scanner's connection (lib/scan/probe-connection.ts) against servers that flood it while
 * no probe reads: what it keeps queued is bounded, and nothing is lost once the probe reads.
 */
import { once } from 'node:events'
import net from 'node:net'
import { expect } from 'chai'
import { MAX_PROBE_FRAME_LENGTH, ProbeConnection, type ProbeEvent } from '../lib/scan/probe-connection.js'
import { delay } from './helpers/timing.js'

/** A server that writes `bytes` to each connection, then ends it. */
async function flooding (bytes: Buffer): Promise<{ port: number, close: () => void }> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {})
    socket.end(bytes)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { port: (server.address() as net.AddressInfo).port, close: () => { server.close() } }
}

const frameBytes = (events: ProbeEvent[]): number => events.reduce((sum, event) => sum + (event.kind === 'frame' ? event.frame.length : 0), 0)

describe('ProbeConnection (scan/probe-connection.ts)', function () {
  this.timeout(20_000)

  async function floodedBy (bytes: Buffer): Promise<{ queued: ProbeEvent[], rest: ProbeEvent[] }> {
    const server = await flooding(bytes)
    const connection = await ProbeConnection.open({ host: '127.0.0.1', port: server.port, timeout: 2000 }, { connections: 0, bytesSent: 0 })
    try {
      // Nobody reads for a while: the server's bytes all arrive meanwhile.
      await delay(500)
      const queued = connection.takeQueued()
      const rest: ProbeEvent[] = []
      for (let event = await connection.next(); event.kind !== 'closed' && event.kind !== 'silence'; event = await connection.next()) rest.push(event)
      return { queued, rest }
    } finally {
      connection.destroy()
      server.close()
    }
  }

  const frames = (events: ProbeEvent[]): ProbeEvent[] => events.filter((event) => event.kind === 'frame')

  it('queues at most 64 frames (and the close) for a probe that does not read, and loses none of 20,000 small ones', async () => {
    const { queued, rest } = await floodedBy(Buffer.from('x\x04'.repeat(20_000), 'latin1'))
    expect(frames(queued)).to.have.length(64)
    expect(queued.length - frames(queued).length).to.be.at.most(1)
    expect(frames(queued).length + frames(rest).length).to.equal(20_000)
  })

  it('queues at most 2 MiB of frames (plus the one that crossed it) for a probe that does not read, and loses none', async () => {
    const frame = Buffer.concat([Buffer.alloc(900 * 1024, 0x41), Buffer.from([4])])
    const { queued, rest } = await floodedBy(Buffer.concat(Array<Buffer>(8).fill(frame)))
    expect(frameBytes(queued)).to.be.at.least(2 * 1024 * 1024).and.below(2 * 1024 * 1024 + MAX_PROBE_FRAME_LENGTH)
    expect(frames(queued)).to.have.length(3)
    expect(frames(queued).length + frames(rest).length).to.equal(8)
  })
})
