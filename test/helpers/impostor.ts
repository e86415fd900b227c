/**
 * The impostor of SECURITY.md's known limits, played by hand on a {@link ScriptedPeer}: a client
 * that holds only someone else's public key.
 * @module
 */
import { expect } from 'chai'
import { decodeBase64, encodeBase64, encryptMessage, parsePublicKey, type PublicKey } from '../../lib/index.js'
import type { ScriptedPeer } from './frame-pair.js'
import { within } from './timing.js'

/** The next frame from `peer`, failing when the side under test hangs up instead. */
export async function nextFrame (peer: ScriptedPeer): Promise<Buffer> {
  const next = await within(3000, peer.read(), 'the next frame')
  if (next === null) throw new Error('the other side hung up')
  return next
}

/**
 * Runs the client's handshake claiming `claimed` as its key: step 3 honestly to the server's
 * key, and at step 5 `claimed`, which it can present but not decrypt for; step 6 it cannot read,
 * and ignores. Then it sends `request`, encrypted to the server. Fails with "the other side hung
 * up" when the server refuses it on the way.
 */
export async function impersonate (peer: ScriptedPeer, claimed: PublicKey, request: string): Promise<void> {
  peer.send('P2SN:PUBKEY')
  const serverKey = parsePublicKey(decodeBase64(await nextFrame(peer)))
  peer.send(encodeBase64(encryptMessage(serverKey, 'P2SN:KEYCHECK')))
  expect((await nextFrame(peer)).toString()).to.equal('P2SN:PUBKEY')
  peer.send(encodeBase64(Buffer.from(claimed.toPem())))
  await nextFrame(peer)
  peer.send(encodeBase64(encryptMessage(serverKey, request)))
}
