/**
 * Whether `connect` goes on with the server it reached: trust on first use with the known
 * peers file, a pinned fingerprint, or no check at all.
 *
 * A known peer may have several lines, one per key: a key of any of them is "known".
 *
 * | option                 | new peer           | known key          | other key                     |
 * |------------------------|--------------------|--------------------|-------------------------------|
 * | (default)              | accept, record     | accept             | refuse (exit 3)               |
 * | `--accept-new`         | accept, record     | accept             | accept, add a line for it     |
 * | `--fingerprint FP`...  | an FP only, record | an FP only         | an FP only, replace the lines |
 * | `--no-verify`          | accept             | accept             | accept (file not touched)     |
 * @module
 */
import type { PeerInfo } from '../index.js'
import { CliError } from './cli-error.js'
import { EXIT } from './exit-codes.js'
import type { KnownPeers } from './known-peers.js'
import { note, warn } from './log.js'

/** The check's settings. */
export interface PeerCheckOptions {
  /** `host:port` of the peer in the known peers file; `undefined` over `--stdio`, where there is none. */
  target: string | undefined
  /** The known peers file. */
  knownPeers: KnownPeers
  /** `--fingerprint`, repeatable: the only keys accepted; none given: any. */
  pins?: readonly string[]
  /** `--accept-new`: a changed key is added to the peer's lines instead of being refused. */
  acceptNew?: boolean
  /** `--no-verify`: accept any key, read and write nothing. */
  noVerify?: boolean
}

/** Checks the server's key during the handshake and records it once the handshake is done. */
export class PeerCheck {
  readonly #options: PeerCheckOptions
  #refusal: CliError | undefined
  #afterHandshake: (() => Promise<void>) | undefined

  constructor (options: PeerCheckOptions) {
    this.#options = options
  }

  /** Why the peer was refused, once it was. */
  get refusal (): CliError | undefined {
    return this.#refusal
  }

  /** For the handshake's `verifyPeer`: false refuses the peer before we prove anything to it. */
  readonly verifyPeer = async (peer: PeerInfo): Promise<boolean> => {
    const { target, knownPeers, pins = [], acceptNew = false, noVerify = false } = this.#options
    const presented = peer.fingerprint
    if (noVerify) return true
    if (pins.length > 0 && !pins.includes(presented)) {
      const given = pins.length === 1 ? `the ${pins[0]!} given with --fingerprint` : `any of the ${pins.join(', ')} given with --fingerprint`
      return this.#refuse(`the key of ${target ?? 'the peer'} is ${presented}, not ${given}; refusing to go on`)
    }
    if (target === undefined) return true
    const known = await knownPeers.lookup(target)
    if (known.length === 0) {
      this.#afterHandshake = async () => {
        await knownPeers.add(target, presented)
        note(`recorded ${target} ${presented} in ${knownPeers.file}`)
      }
      return true
    }
    if (known.some((record) => record.fingerprint === presented)) return true
    const where = known.length === 1
      ? `line ${known[0]!.line} of ${knownPeers.file} has ${known[0]!.fingerprint}`
      : `lines ${known.map((record) => record.line).join(', ')} of ${knownPeers.file} have ${known.map((record) => record.fingerprint).join(', ')}`
    if (pins.length === 0 && !acceptNew) {
      return this.#refuse(
        `the key of ${target} has changed: ${where}, ` +
        `the peer presented ${presented}; someone may be intercepting the connection, or the peer has a new key. ` +
        `If you expected the change, run again with --fingerprint ${presented} (or --accept-new, which adds it), ` +
        `or edit ${knownPeers.file}`)
    }
    const was = known.map((record) => record.fingerprint).join(', ')
    this.#afterHandshake = acceptNew
      ? async () => {
        await knownPeers.add(target, presented)
        // A changed key accepted without a fingerprint given: say so even with --quiet, since it
        // is also what a man in the middle would present.
        warn(`added a key of ${target} to ${knownPeers.file}: ${presented}, besides ${was}; it was not checked, so remove it if you did not expect a new key`)
      }
      : async () => {
        await knownPeers.replace(target, presented)
        note(`replaced the key of ${target} in ${knownPeers.file}: was ${was}, now ${presented}`)
      }
    return true
  }

  /** Records what `verifyPeer` decided to record; call once the handshake is done. */
  async record (): Promise<void> {
    const afterHandshake = this.#afterHandshake
    this.#afterHandshake = undefined
    await afterHandshake?.()
  }

  #refuse (message: string): false {
    this.#refusal = new CliError(message, EXIT.peerRefused)
    return false
  }
}
