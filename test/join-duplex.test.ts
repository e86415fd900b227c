import { expect } from 'chai'
import { once } from 'node:events'
import { PassThrough, Writable } from 'node:stream'
import { joinDuplex } from '../lib/index.js'
import { expectQuietDestroy } from './helpers/chunking.js'
import { settle } from './helpers/timing.js'

describe('joinDuplex (join-duplex.ts)', () => {
  it('reads what the readable gives and writes to the writable; end() ends the writable', async () => {
    const input = new PassThrough()
    const output = new PassThrough()
    const joined = joinDuplex(input, output)
    const got: Buffer[] = []
    output.on('data', (chunk: Buffer) => got.push(chunk))
    joined.write('to the writable')
    joined.end()
    await once(output, 'end')
    expect(Buffer.concat(got).toString()).to.equal('to the writable')
    const read: Buffer[] = []
    joined.on('data', (chunk: Buffer) => read.push(chunk))
    input.end('from the readable')
    await once(joined, 'end')
    expect(Buffer.concat(read).toString()).to.equal('from the readable')
  })

  it('holds a write until the writable drains (backpressure)', async () => {
    let release: (() => void) | undefined
    const slow = new Writable({
      highWaterMark: 4,
      write (_chunk, _encoding, callback) { release = callback }
    })
    const joined = joinDuplex(new PassThrough(), slow)
    let written = false
    joined.write(Buffer.alloc(16), () => { written = true })
    await settle()
    expect(written).to.equal(false)
    release!()
    await settle()
    expect(written).to.equal(true)
  })

  it('pauses the readable while its reader is behind', async () => {
    const input = new PassThrough()
    const joined = joinDuplex(input, new PassThrough())
    for (let i = 0; i < 10; i++) input.write(Buffer.alloc(16 * 1024))
    await settle()
    expect(input.isPaused()).to.equal(true)
    joined.resume()
    await settle()
    expect(input.isPaused()).to.equal(false)
  })

  it('lets the writable flush after end() when destroyed, instead of cutting it off', async () => {
    const flushed: Buffer[] = []
    let finish: (() => void) | undefined
    const slow = new Writable({
      write (chunk: Buffer, _encoding, callback) { flushed.push(chunk); setTimeout(callback, 20) },
      final (callback) { finish = callback; setTimeout(() => finish?.(), 20) }
    })
    const joined = joinDuplex(new PassThrough(), slow)
    joined.end('last words')
    joined.destroy()
    await once(joined, 'close')
    expect(slow.writableFinished, 'the writable finished, not cut off').to.equal(true)
    expect(Buffer.concat(flushed).toString()).to.equal('last words')
  })

  it('destroy() is quiet and destroys both streams', async () => {
    const input = new PassThrough()
    const output = new PassThrough()
    await expectQuietDestroy(joinDuplex(input, output), [Buffer.from('x')])
    expect(input.destroyed).to.equal(true)
    expect(output.destroyed).to.equal(true)
  })

  it('fails with ERR_P2SN_CONNECTION, the cause kept, when either stream fails', async () => {
    const input = new PassThrough()
    const joined = joinDuplex(input, new PassThrough())
    const failed = once(joined, 'error')
    input.destroy(new Error('disk on fire'))
    const [err] = await failed as [Error & { code: string, cause: Error }]
    expect(err.code).to.equal('ERR_P2SN_CONNECTION')
    expect(err.cause.message).to.equal('disk on fire')
  })

  it('fails with ERR_P2SN_CLOSED when the readable closes without ending (a killed child)', async () => {
    const input = new PassThrough()
    const joined = joinDuplex(input, new PassThrough())
    const failed = once(joined, 'error')
    input.destroy()
    const [err] = await failed as [Error & { code: string }]
    expect(err.code).to.equal('ERR_P2SN_CLOSED')
  })
})
