/**
 * `wrap()`: a {@link Channel} around any duplex byte stream, its options checked before anything
 * is opened; in the authenticated mode, with mutual TLS run over the stream first.
 * @module
 */
import type { Duplex as NodeDuplex } from 'node:stream'
import { checkLimit, type EveryOption } from './arguments.js'
import { authenticate, authenticationContext, type AuthenticationTlsOptions } from './authentication.js'
import { Channel, type ChannelOptions, type ChannelPlan, type ChannelSetup, type WrapOptions } from './channel.js'
import { P2snError } from './errors.js'
import { checkHandshakeOptions, checkRole, loadKeys, type Role } from './handshake-runner.js'
import { toKeyPair } from './keys.js'
import { DEFAULT_MAX_FRAME_LENGTH, MAX_HANDSHAKE_FRAME_LENGTH } from './protocol.js'
import { blockLimit } from './rsa-cipher.js'
import { poolEngineName, RsaPool } from './rsa-pool.js'

/**
 * Wraps a duplex byte stream (a TCP or TLS socket, stdio, a child process's stdio) in a
 * {@link Channel}: runs the handshake as `role`, then carries encrypted messages.
 *
 * @example
 * const channel = wrap(socket, { role: 'client', keyPair })
 * channel.write('hello')
 * channel.on('data', (message) => console.log(message.toString()))
 */
export function wrap (duplex: NodeDuplex, options: WrapOptions): Channel {
  let plan: ChannelPlan
  try {
    plan = planChannel(options, options.role, options.tls)
  } catch (err) {
    // Nothing was built on it yet: do not leave the stream open behind a thrown error.
    duplex.destroy()
    throw err
  }
  return openChannel(duplex, plan)
}

/**
 * The pool of its own that options ask for (`workers`, and no `pool`), or undefined. Whoever
 * asks closes it: a channel, a server or a client.
 * @internal
 */
export function ownPoolFor (options: Pick<WrapOptions, 'pool' | 'workers'>): RsaPool | undefined {
  return options.pool === undefined && options.workers !== undefined ? new RsaPool({ workers: options.workers }) : undefined
}

/**
 * Makes planned options open every channel on one pool (a server's or a client's): the one they
 * name, else `own`; no channel then makes a pool of its own for `workers`.
 * @internal
 */
export function shareOnePool (options: WrapOptions, own: RsaPool | undefined): void {
  options.pool ??= own
  options.workers = undefined
}

/** How a channel's connection came to be, beyond its plan. @internal */
export interface Opening {
  /** The host a client dialled, which TLS checks the server's certificate against. */
  host?: string
  /** The peer's address when the socket's is not it: a PROXY protocol header's (a server's). */
  remote?: ChannelSetup['remote']
  /** See {@link ChannelSetup.ownSocket}. Default false. */
  ownSocket?: boolean
}

/**
 * A channel over `duplex` as `plan` says; in the authenticated mode, with TLS set up over it
 * first.
 * @internal
 */
export function openChannel (duplex: NodeDuplex, plan: ChannelPlan, { host, remote, ownSocket = false }: Opening = {}): Channel {
  const { options } = plan
  // A pool of the channel's own for `workers` is made here, so that the key check uses it too.
  const own = ownPoolFor(options)
  let keyPair = plan.keyPair
  let authentication
  if (options.authenticate === true) {
    // One key pair for TLS and the handshake, even when it is generated here.
    const keys = loadKeys(keyPair)
    keyPair = keys
    authentication = authenticate(duplex, options.role, keys, options.tls, host)
  }
  try {
    const setup: EveryOption<ChannelSetup> = {
      options,
      keyPair,
      maxFrameLength: plan.maxFrameLength,
      maxMessageBlocks: plan.maxMessageBlocks,
      pool: options.pool ?? own,
      remote,
      authentication,
      ownSocket
    }
    const channel = new Channel(duplex, setup)
    if (own !== undefined) channel.once('close', () => { void own.close() })
    return channel
  } catch (err) {
    void own?.close()
    authentication?.abort()
    duplex.destroy()
    throw err
  }
}

/**
 * Checks the options every channel takes, before anything is opened, so that a bad option
 * throws at once instead of leaving a socket behind; the result is what {@link openChannel}
 * opens channels from, with the options a channel reads copied (see {@link channelOptions}).
 * @param tls - the authenticated mode's TLS options (wrap() refuses them without it)
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` (or the key's error) for options that cannot work
 * @internal
 */
export function planChannel (options: ChannelOptions, role: Role, tls?: AuthenticationTlsOptions): ChannelPlan {
  checkLimit('idleTimeout', options.idleTimeout, 0)
  const maxMessageBlocks = blockLimit(options)
  if (options.authenticate !== undefined && typeof options.authenticate !== 'boolean') {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `authenticate must be true or false, not ${String(options.authenticate)}`)
  }
  if (options.workers !== undefined) {
    checkLimit('workers', options.workers, 1, 1)
    poolEngineName(options.engine)
  }
  checkHandshakeOptions(options)
  // A key given as PEM is read now, once, so that a bad one throws before anything opens.
  const keyPair = options.keyPair === undefined || options.keyPair instanceof Promise ? options.keyPair : toKeyPair(options.keyPair)
  // TLS options of one's own that cannot work should throw now too.
  if (options.authenticate === true && keyPair !== undefined && !(keyPair instanceof Promise)) authenticationContext(keyPair, tls)
  checkRole(role)
  if (tls !== undefined && options.authenticate !== true) {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'wrap() takes tls options only with authenticate: true; for plain tls, wrap a tls socket')
  }
  return {
    options: channelOptions(options, role, tls),
    keyPair,
    maxFrameLength: checkLimit('maxFrameLength', options.maxFrameLength, DEFAULT_MAX_FRAME_LENGTH, MAX_HANDSHAKE_FRAME_LENGTH),
    maxMessageBlocks
  }
}

/**
 * The options a channel reads, copied by name (see `EveryOption`) with its role and the
 * authenticated mode's TLS options: what connect() and servers open every channel from,
 * whatever else their own options hold.
 * @internal
 */
export function channelOptions (options: ChannelOptions, role: Role, tls: AuthenticationTlsOptions | undefined): WrapOptions {
  const copy: EveryOption<WrapOptions> = {
    role,
    tls,
    keyPair: options.keyPair,
    serverKeyEncoding: options.serverKeyEncoding,
    handshakeTimeout: options.handshakeTimeout,
    verifyPeer: options.verifyPeer,
    engine: options.engine,
    trace: options.trace,
    strict: options.strict,
    rejection: options.rejection,
    maxMessageBlocks: options.maxMessageBlocks,
    maxFrameLength: options.maxFrameLength,
    idleTimeout: options.idleTimeout,
    workers: options.workers,
    pool: options.pool,
    authenticate: options.authenticate
  }
  return copy
}
