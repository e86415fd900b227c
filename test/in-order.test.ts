/**
 * InOrder (in-order.ts): outcomes handed on in the order the work went in, whatever order it
 * finishes in; synchronous work with nothing ahead delivered at once; clear().
 */
import { expect } from 'chai'
import { InOrder, type Outcome } from '../lib/in-order.js'
import { settle } from './helpers/timing.js'

/** A promise with its settling functions, to finish work in an order of the test's choosing. */
function deferred<T> (): { promise: Promise<T>, resolve: (value: T) => void, reject: (error: unknown) => void } {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}

/** An InOrder that records what it delivers, as `v:<value>` or `e:<message>`, and its runs. */
function recorder (): { line: InOrder<string>, seen: string[], runs: () => number } {
  const seen: string[] = []
  let runs = 0
  const line = new InOrder<string>((outcome: Outcome<string>) => {
    seen.push(outcome.ok ? `v:${outcome.value}` : `e:${(outcome.error as Error).message}`)
  }, () => { runs++ })
  return { line, seen, runs: () => runs }
}

describe('InOrder (in-order.ts)', function () {
  it('delivers in the order the work went in, whatever order the promises settle in', async () => {
    const { line, seen } = recorder()
    const work = Array.from({ length: 6 }, () => deferred<string>())
    for (const { promise } of work) line.add(promise)
    expect(line.size).to.equal(6)
    for (const i of [3, 5, 1, 4]) work[i]!.resolve(`w${i}`)
    await settle()
    // The head (0) still runs: nothing may come out yet.
    expect(seen).to.deep.equal([])
    work[0]!.resolve('w0')
    await settle()
    expect(seen).to.deep.equal(['v:w0', 'v:w1'])
    expect(line.size).to.equal(4)
    work[2]!.resolve('w2')
    await settle()
    expect(seen).to.deep.equal(['v:w0', 'v:w1', 'v:w2', 'v:w3', 'v:w4', 'v:w5'])
    expect(line.size).to.equal(0)
  })

  it('many at random: every outcome once, in order', async () => {
    const { line, seen } = recorder()
    const work = Array.from({ length: 200 }, () => deferred<string>())
    for (const { promise } of work) line.add(promise)
    const order = work.map((_, i) => i).sort(() => Math.random() - 0.5)
    for (const i of order) {
      work[i]!.resolve(`w${i}`)
      if (Math.random() < 0.3) await settle()
    }
    await settle()
    expect(seen).to.deep.equal(work.map((_, i) => `v:w${i}`))
  })

  it('a value with nothing ahead is delivered synchronously, inside add(), and the hook runs once', () => {
    const { line, seen, runs } = recorder()
    line.add('now')
    expect(seen).to.deep.equal(['v:now'])
    expect(runs()).to.equal(1)
    expect(line.size).to.equal(0)
  })

  it('a value behind a running promise waits for it', async () => {
    const { line, seen } = recorder()
    const first = deferred<string>()
    line.add(first.promise)
    line.add('second')
    expect(seen).to.deep.equal([])
    expect(line.size).to.equal(2)
    first.resolve('first')
    await settle()
    expect(seen).to.deep.equal(['v:first', 'v:second'])
  })

  it('a failure is delivered in its place, and what follows it still comes out', async () => {
    const { line, seen } = recorder()
    const work = Array.from({ length: 3 }, () => deferred<string>())
    for (const { promise } of work) line.add(promise)
    work[2]!.resolve('c')
    work[1]!.reject(new Error('b failed'))
    await settle()
    expect(seen).to.deep.equal([])
    work[0]!.resolve('a')
    await settle()
    expect(seen).to.deep.equal(['v:a', 'e:b failed', 'v:c'])
  })

  it('the hook runs once per run of deliveries, not per outcome', async () => {
    const { line, seen, runs } = recorder()
    const work = Array.from({ length: 4 }, () => deferred<string>())
    for (const { promise } of work) line.add(promise)
    for (const i of [3, 2, 1]) work[i]!.resolve(`w${i}`)
    await settle()
    expect(runs()).to.equal(0)
    work[0]!.resolve('w0')
    await settle()
    expect(seen).to.have.length(4)
    expect(runs()).to.equal(1)
  })

  it('clear() drops what is in line: later settlements are ignored, and new work starts afresh', async () => {
    const { line, seen } = recorder()
    const work = Array.from({ length: 3 }, () => deferred<string>())
    for (const { promise } of work) line.add(promise)
    work[1]!.resolve('done before clear')
    await settle()
    line.clear()
    expect(line.size).to.equal(0)
    work[0]!.resolve('late')
    work[2]!.reject(new Error('late failure'))
    await settle()
    expect(seen).to.deep.equal([])
    // New work is not held behind what was dropped.
    line.add('after')
    expect(seen).to.deep.equal(['v:after'])
  })

  it('clear() from inside deliver stops the run after that outcome', async () => {
    const seen: string[] = []
    const line: InOrder<string> = new InOrder<string>((outcome) => {
      if (!outcome.ok) { seen.push('failed'); line.clear(); return }
      seen.push(outcome.value)
    })
    const work = Array.from({ length: 4 }, () => deferred<string>())
    for (const { promise } of work) line.add(promise)
    work[3]!.resolve('d')
    work[2]!.resolve('c')
    work[1]!.reject(new Error('b'))
    work[0]!.resolve('a')
    await settle()
    expect(seen).to.deep.equal(['a', 'failed'])
  })

  it('work added from inside deliver goes behind what is already in line, after deliver returns', async () => {
    const seen: string[] = []
    let depth = 0
    let deepest = 0
    const line: InOrder<string> = new InOrder<string>((outcome) => {
      if (!outcome.ok) return
      deepest = Math.max(deepest, ++depth)
      seen.push(outcome.value)
      if (outcome.value === 'a') line.add('added by a')
      depth--
    })
    const b = deferred<string>()
    line.add('a')
    line.add(b.promise)
    // 'a' came out at once, and what it added waits behind nothing: out in the same run.
    expect(seen).to.deep.equal(['a', 'added by a'])
    b.resolve('b')
    await settle()
    expect(seen).to.deep.equal(['a', 'added by a', 'b'])
    // Never delivered from inside a delivery: deliver need not be written to be re-entered.
    expect(deepest).to.equal(1)

    const seen2: string[] = []
    const c = deferred<string>()
    const line2: InOrder<string> = new InOrder<string>((outcome) => {
      if (!outcome.ok) return
      seen2.push(outcome.value)
      if (outcome.value === 'c') line2.add('added by c')
    })
    line2.add(c.promise)
    line2.add('d')
    c.resolve('c')
    await settle()
    expect(seen2).to.deep.equal(['c', 'd', 'added by c'])
  })
})
