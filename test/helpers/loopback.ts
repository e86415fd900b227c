/**
 * What the loopback tests of channels and servers share: a server and a client key pair
 * (1024-bit, made once per describe block) and the closers to run after each test.
 * @module
 */
import { generateKeyPair, type KeyPair } from '../../lib/index.js'

/** Filled in by the hooks {@link useLoopbackFixture} installs. */
export interface LoopbackFixture {
  serverKeys: KeyPair
  clientKeys: KeyPair
  /** Run, then emptied, after each test. */
  closers: Array<() => void>
}

/** Installs, in the calling describe block, the hooks that make the keys and run the closers. */
export function useLoopbackFixture (): LoopbackFixture {
  const fixture = { closers: [] as Array<() => void> } as LoopbackFixture
  before(async () => {
    [fixture.serverKeys, fixture.clientKeys] = await Promise.all([generateKeyPair({ bits: 1024 }), generateKeyPair({ bits: 1024 })])
  })
  afterEach(() => {
    for (const close of fixture.closers.splice(0)) close()
  })
  return fixture
}
