/**
 * `connect()`: a client channel over TCP, or TLS, to a P2SN server.
 * @module
 */
import net from 'node:net'
import tls from 'node:tls'
import { keepAliveDelay } from './arguments.js'
import type { Channel, ChannelOptions } from './channel.js'
import { openChannel, planChannel } from './wrap.js'

/** Options of {@link connect}. */
export interface ConnectOptions extends ChannelOptions {
  /** Host to connect to. Default `'127.0.0.1'`. */
  host?: string
  /** TCP port. */
  port: number
  /** Connect over TLS with these options (`ca`, `servername`, …); plain TCP when left out. */
  tls?: tls.ConnectionOptions
  /**
   * Turn on TCP keepalive, with this initial delay in ms: after that long without traffic the
   * system probes the server, so that one that vanished (a machine off, a cable cut) ends in a
   * failed connection rather than a silent one. The system counts whole seconds: 1 to 999 count
   * as 1 s, 0 keeps the system's own delay (two hours on Linux), and `Infinity` leaves keepalive
   * off. Default: off.
   */
  keepAlive?: number
}

/**
 * Connects to a P2SN server over TCP (or TLS, given `tls`) as the client. The channel is
 * returned at once; listen for `'handshake'`, or just write: messages wait for the handshake.
 *
 * @example
 * const channel = connect({ host: 'localhost', port: 7000, keyPair })
 * console.log((await channel.request('hello')).toString())
 */
export function connect (options: ConnectOptions): Channel {
  const { host = '127.0.0.1', port, tls: tlsOptions } = options
  // Infinity: keepalive off, as when left out.
  const keepAliveMs = keepAliveDelay(options.keepAlive)
  // Checked before a socket is opened, and once; the channel's options copied, not spread.
  const plan = planChannel(options, 'client', options.authenticate === true ? tlsOptions : undefined)
  // Half-open, so that end() half-closes instead of the socket ending itself on the peer's end.
  // (tls.connect passes allowHalfOpen on to its socket; its typings just leave it out.)
  // The authenticated mode runs its own TLS over a plain socket, with the options given.
  const socket = options.authenticate === true || tlsOptions === undefined
    ? net.connect({ host, port, allowHalfOpen: true, noDelay: true })
    : tls.connect(halfOpen({ host, port, ...tlsOptions }))
  if (keepAliveMs !== undefined) socket.setKeepAlive(true, keepAliveMs)
  return openChannel(socket, plan, { host, ownSocket: true })
}

function halfOpen (options: tls.ConnectionOptions): tls.ConnectionOptions {
  const withHalfOpen: tls.ConnectionOptions & Pick<net.SocketConstructorOpts, 'allowHalfOpen'> = { allowHalfOpen: true, ...options }
  return withHalfOpen
}

