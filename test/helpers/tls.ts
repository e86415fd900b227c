/**
 * Sockets made by hand for the tests of the authenticated mode and of the attacks on plain P2SN:
 * TLS as either side of the mode does it, under a certificate of a P2SN key (as the project's
 * own sides make it, with `authenticationContext`), and a connected socket, plain or in TLS, to
 * script a peer on. Neither side checks the other's certificate here: the test looks at it
 * itself, or leaves that to the P2SN side it runs over the socket.
 * @module
 */
import { once } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'
import type { KeyPair } from '../../lib/index.js'
import { authenticationContext } from '../../lib/authentication.js'

/** A TLS client to 127.0.0.1:`port` presenting a certificate of `keys`; not yet connected. */
export function dialTls (port: number, keys: KeyPair): tls.TLSSocket {
  return tls.connect({ port, host: '127.0.0.1', secureContext: authenticationContext(keys), rejectUnauthorized: false })
}

/**
 * The server side of TLS over `socket`, just accepted, under a certificate of `keys`: it asks for
 * the client's certificate (as the mode's server does) but takes any.
 */
export function acceptTlsAs (socket: net.Socket, keys: KeyPair): tls.TLSSocket {
  return new tls.TLSSocket(socket, { isServer: true, secureContext: authenticationContext(keys), requestCert: true, rejectUnauthorized: false })
}

/**
 * A socket to 127.0.0.1:`port`, connected: plain, or with `tlsKeys` in TLS under a certificate of
 * that key (see {@link dialTls}). Its errors are ignored, since the test looks at what the other
 * side does; it goes into `sockets` before it connects, for the test to destroy after.
 */
export async function dial (port: number, sockets: net.Socket[], tlsKeys?: KeyPair): Promise<net.Socket> {
  const socket = tlsKeys === undefined ? net.connect(port, '127.0.0.1') : dialTls(port, tlsKeys)
  socket.on('error', () => {})
  sockets.push(socket)
  await once(socket, tlsKeys === undefined ? 'connect' : 'secureConnect')
  return socket
}
