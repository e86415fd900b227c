/**
 * Whether `connect` goes on with the server it reached: trust on first use with the known
 * peers file, a pinned fingerprint, or no check at all.
 *
 * | option              | new peer         | same key | changed key                 |
 * |---------------------|------------------|----------|-----------------------------|
 * | (default)           | accept, record   | accept   | refuse (exit 3)             |
 * | `--accept-new`      | accept, record   | accept   | accept, replace the record  |
 * | `--fingerprint FP`  | FP only, record  | FP only  | FP only, replace the record |
 * | `--no-verify`       | accept           | accept   | accept (file not touched)   |
 * @module
 */
import type { PeerInfo } from '../index.js'
import { CliError } from './cli-error.js'
import { EXIT } from './exit-codes.js'
import type { KnownPeers } from './known-peers.js'
import { note } from './log.js'

/** The check's settings. */
export interface PeerCheckOptions {
  /** `host:port` of the peer in the known peers file; `undefined` over `--stdio`, where there is none. */
  target: string | undefined
  /** The known peers file. */
  knownPeers: KnownPeers
  /** `--fingerprint`: the only key accepted. */
  pin?: string | undefined
  /** `--accept-new`: a changed key replaces the record instead of being refused. */
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
    const { target, knownPeers, pin, acceptNew = false, noVerify = false } = this.#options
    const presented = peer.fingerprint
    if (noVerify) return true
    if (pin !== undefined && presented !== pin) {
      return this.#refuse(`the key of ${target ?? 'the peer'} is ${presented}, not the ${pin} given with --fingerprint; refusing to go on`)
    }
    if (target === undefined) return true
    const known = await knownPeers.lookup(target)
    if (known === undefined) {
      this.#afterHandshake = async () => {
        await knownPeers.add(target, presented)
        note(`recorded ${target} ${presented} in ${knownPeers.file}`)
      }
      return true
    }
    if (known.fingerprint === presented) return true
    if (pin === undefined && !acceptNew) {
      return this.#refuse(
        `the key of ${target} has changed: line ${known.line} of ${knownPeers.file} has ${known.fingerprint}, ` +
        `the peer presented ${presented}; someone may be intercepting the connection, or the peer has a new key. ` +
        `If you expected the change, run again with --fingerprint ${presented} (or --accept-new), ` +
        `or delete line ${known.line} of ${knownPeers.file}`)
    }
    this.#afterHandshake = async () => {
      await knownPeers.replace(target, presented)
      note(`replaced the key of ${target} in ${knownPeers.file}: was ${known.fingerprint}, now ${presented}`)
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
