/**
 * The authenticated mode: P2SN run inside mutual TLS 1.3, each side's certificate made from its
 * own P2SN key pair, so that TLS's `CertificateVerify` proves the very key that the P2SN
 * handshake then presents. Plain P2SN proves nobody's key (see SECURITY.md); this is what makes a
 * fingerprint mean something. The cryptography is TLS's (OpenSSL's), not ours.
 *
 * A layer below the frames: it turns a byte duplex into a TLS socket and reports the key the
 * peer proved. The handshake (its `provenPeerKey` option) compares that key with the one the peer presents at step 2 or 5.
 * @module
 */
import crypto, { type KeyObject } from 'node:crypto'
import { EventEmitter } from 'node:events'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import forge from 'node-forge'
import { P2snError } from './errors.js'
import type { KeyPair, PrivateKey } from './keys.js'

/**
 * TLS options of your own for the authenticated mode: `tls.connect` options for a client,
 * `tls.createServer` options for a server. The defaults are a self-signed certificate of this
 * side's P2SN key and no certificate-authority check, since the fingerprint is what is checked.
 * Give `cert` (a certificate of this side's P2SN key, signed by your CA) and `ca` to check the
 * peer's certificate against your CA as well: `rejectUnauthorized` is then `true` unless set.
 * `key`, when given, must be this side's P2SN private key. TLS 1.3 is required whatever is set.
 */
export type AuthenticationTlsOptions = tls.ConnectionOptions | tls.TlsOptions

/** What a finished TLS handshake gives: the socket to run P2SN over and the key the peer proved. */
export interface AuthenticatedTransport {
  /** The TLS socket, its handshake done. */
  socket: tls.TLSSocket
  /** The public key of the peer's certificate, whose private half signed the handshake. */
  peerKey: KeyObject
}

/** A TLS handshake under way: its result, and a way to give up on it. */
export interface Authentication {
  /** Resolves once the peer has proven a key; rejects with `ERR_P2SN_AUTHENTICATION` or `ERR_P2SN_CONNECTION`. */
  ready: Promise<AuthenticatedTransport>
  /** Destroys the TLS socket and the duplex under it; `ready` then never resolves. */
  abort: () => void
}

/** Certificates never expire (RFC 5280's "no well-defined expiration"): the key, not a date, is what is trusted. */
const NOT_BEFORE = new Date(Date.UTC(2000, 0, 1))
const NOT_AFTER = new Date(Date.UTC(9999, 11, 31, 23, 59, 59))

// Made once per private key (a key pair object may be made afresh around the same key).
const certificates = new WeakMap<PrivateKey, string>()
/** Secure contexts per private key and per options object: parsing a key and a certificate costs milliseconds. */
const contexts = new WeakMap<PrivateKey, WeakMap<object, tls.SecureContext>>()
/** A tls.Server that never listens, and Node's listener that takes its connections (see {@link acceptTls}). */
interface SharedServer {
  server: tls.Server
  takeConnection: (this: tls.Server, socket: Duplex) => void
}
/** The same for servers' side, per private key and options object. */
const servers = new WeakMap<PrivateKey, WeakMap<object, SharedServer>>()
/** No options of one's own: one object, so that it keys the caches like any other. */
const NO_OPTIONS: AuthenticationTlsOptions = {}

/** The value cached in `cache` for `keyPair` and `options`, made with `make` the first time. */
function cached<T> (cache: WeakMap<PrivateKey, WeakMap<object, T>>, keyPair: KeyPair, options: AuthenticationTlsOptions, make: () => T): T {
  let byOptions = cache.get(keyPair.privateKey)
  if (byOptions === undefined) cache.set(keyPair.privateKey, byOptions = new WeakMap())
  let value = byOptions.get(options)
  if (value === undefined) byOptions.set(options, value = make())
  return value
}

/**
 * A self-signed X.509 certificate (PEM) of `keyPair`'s public key, as the authenticated mode
 * presents it: subject and issuer `CN=p2sn <fingerprint>`, SHA-256 with RSA, no expiry. Built
 * with node-forge, signed with `node:crypto`. Made once per key pair.
 */
export function selfSignedCertificate (keyPair: KeyPair): string {
  let pem = certificates.get(keyPair.privateKey)
  if (pem !== undefined) return pem
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(keyPair.publicKey.toPem())
  // A positive serial from the key, so that the same key always makes the same certificate.
  cert.serialNumber = '01' + keyPair.publicKey.der.subarray(-15).toString('hex')
  cert.validity.notBefore = NOT_BEFORE
  cert.validity.notAfter = NOT_AFTER
  const name = [{ name: 'commonName', value: `p2sn ${keyPair.publicKey.fingerprint}` }]
  cert.setSubject(name)
  cert.setIssuer(name)
  // forge's own signing would run its pure-JavaScript RSA (tens of ms); OpenSSL signs the same bytes.
  cert.signatureOid = cert.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption!
  cert.tbsCertificate = (forge.pki as unknown as { getTBSCertificate: (c: forge.pki.Certificate) => forge.asn1.Asn1 }).getTBSCertificate(cert)
  const tbs = Buffer.from(forge.asn1.toDer(cert.tbsCertificate).getBytes(), 'binary')
  cert.signature = crypto.sign('sha256', tbs, keyPair.privateKey.keyObject).toString('binary')
  pem = forge.pki.certificateToPem(cert)
  certificates.set(keyPair.privateKey, pem)
  return pem
}

/**
 * The TLS 1.3 context of the authenticated mode for `keyPair`, with `options` of one's own.
 * @throws P2snError `ERR_P2SN_INVALID_ARGUMENT` when `options` name a certificate or key that is
 *   not this side's P2SN key, or allow only TLS versions below 1.3
 */
export function authenticationContext (keyPair: KeyPair, options: AuthenticationTlsOptions = NO_OPTIONS): tls.SecureContext {
  return cached(contexts, keyPair, options, () => makeContext(keyPair, options))
}

function makeContext (keyPair: KeyPair, own: AuthenticationTlsOptions): tls.SecureContext {
  if (own.maxVersion !== undefined && own.maxVersion !== 'TLSv1.3') {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `the authenticated mode needs tls 1.3, but tls.maxVersion is ${own.maxVersion}; leave it out`)
  }
  checkOwnCertificate(keyPair, own)
  try {
    return tls.createSecureContext(contextOptions(keyPair, own))
  } catch (err) {
    throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `the tls options of the authenticated mode are not usable: ${(err as Error).message}`, { cause: err })
  }
}

/** The options of one's own, with this side's key and certificate, and TLS 1.3 at least. */
function contextOptions (keyPair: KeyPair, own: AuthenticationTlsOptions): tls.SecureContextOptions {
  return { ...own, key: own.key ?? keyPair.privateKey.toPem(), cert: own.cert ?? selfSignedCertificate(keyPair), minVersion: 'TLSv1.3' }
}

/** Whether the peer's certificate must also be signed by a CA: when one is given, unless told otherwise. */
function checksCa (own: AuthenticationTlsOptions): boolean {
  return own.rejectUnauthorized ?? own.ca !== undefined
}

/**
 * The server's side of the TLS handshake over `duplex`, by Node's tls.Server, the one part of
 * Node that checks a client's certificate against `ca` and reports every TLS error (a
 * TLSSocket made by hand as a server does neither). The server is one per key and options, its
 * context parsed once; it never listens. Each connection is handed to it through an object of
 * its own over that server, so that the `'secureConnection'` and `'tlsClientError'` events, which
 * a tls.Server emits on itself, are this connection's alone.
 */
function acceptTls (duplex: Duplex, keyPair: KeyPair, own: AuthenticationTlsOptions): EventEmitter {
  if (process.versions.bun !== undefined) return acceptTlsByHand(duplex, keyPair, own)
  const { server, takeConnection } = cached(servers, keyPair, own, () => {
    const server = tls.createServer({ ...contextOptions(keyPair, own), requestCert: true, rejectUnauthorized: checksCa(own) })
    // The listener tls.Server gives net.Server: it makes the TLSSocket with the server's settings.
    const takeConnection = server.listeners('connection')[0] as SharedServer['takeConnection'] | undefined
    if (takeConnection === undefined) throw new P2snError('ERR_P2SN_AUTHENTICATION', 'this runtime\'s tls.Server takes no connections handed to it; the authenticated mode cannot serve here')
    return { server, takeConnection }
  })
  const connection = Object.create(server) as tls.Server
  EventEmitter.call(connection)
  // Told at the first read of a connection that hangs up before TLS is done, not at a timeout:
  // half-open only once it is (authenticate's `secured`).
  if (duplex instanceof net.Socket) duplex.allowHalfOpen = false
  process.nextTick(() => { takeConnection.call(connection, duplex) })
  return connection
}

/**
 * Bun's side of {@link acceptTls}: its tls.Server accepts a connection handed to it but never
 * finishes the handshake, while a server TLSSocket made by hand works there. The certificate
 * check against `ca` that Node's tls.Server does is done here from the socket's
 * `authorized`; the events are those of the tls.Server path.
 */
function acceptTlsByHand (duplex: Duplex, keyPair: KeyPair, own: AuthenticationTlsOptions): EventEmitter {
  const connection = new EventEmitter()
  const socket = new tls.TLSSocket(duplex, { isServer: true, secureContext: authenticationContext(keyPair, own), requestCert: true, rejectUnauthorized: false })
  const settle = (event: 'secureConnection' | 'tlsClientError', err?: Error): void => {
    socket.removeListener('secure', onSecure)
    socket.removeListener('error', onError)
    socket.removeListener('close', onClose)
    if (event === 'secureConnection') connection.emit(event, socket)
    else connection.emit(event, err, socket)
  }
  const onSecure = (): void => {
    if (checksCa(own) && !socket.authorized) settle('tlsClientError', new Error(`certificate refused: ${String(socket.authorizationError)}`))
    else settle('secureConnection')
  }
  const onError = (err: Error): void => { settle('tlsClientError', err) }
  const onClose = (): void => { settle('tlsClientError') }
  socket.once('secure', onSecure)
  socket.once('error', onError)
  socket.once('close', onClose)
  return connection
}

/** A certificate or key of one's own must be of this side's P2SN key, or the peer would see two keys. */
function checkOwnCertificate (keyPair: KeyPair, own: AuthenticationTlsOptions): void {
  const ours = keyPair.publicKey.keyObject
  const check = (read: () => KeyObject, unreadable: string, another: string): void => {
    let key: KeyObject
    try {
      key = read()
    } catch (err) {
      throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', `${unreadable}: ${(err as Error).message}`, { cause: err })
    }
    if (!key.equals(ours)) throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', another)
  }
  const fingerprint = keyPair.publicKey.fingerprint
  if (own.cert !== undefined) {
    const first = ([] as Array<string | Buffer>).concat(own.cert)[0]
    check(() => new crypto.X509Certificate(first ?? '').publicKey, 'tls.cert could not be read as an x.509 certificate',
      `tls.cert is a certificate of another key, not of this side's p2sn key ${fingerprint}; certify the p2sn key itself`)
  }
  if (own.key !== undefined) {
    const first = ([] as Array<string | Buffer | tls.KeyObject>).concat(own.key)[0]
    // A key given as { pem, passphrase }, or as PEM with the options' passphrase.
    const pem = typeof first === 'object' && 'pem' in first ? first : { pem: first ?? '', passphrase: own.passphrase }
    check(() => crypto.createPublicKey(crypto.createPrivateKey({ key: pem.pem, passphrase: pem.passphrase })), 'tls.key could not be read',
      `tls.key is not this side's p2sn private key ${fingerprint}; leave it out, the p2sn key is used`)
  }
}

/**
 * Starts mutual TLS 1.3 over `duplex` as `role`, once the key pair is there. Resolves when the
 * peer has proven a key; a failed TLS handshake, or a peer without a certificate, rejects with
 * `ERR_P2SN_AUTHENTICATION`, a failed connection with `ERR_P2SN_CONNECTION`. A client checks a
 * CA-signed certificate (with `ca` given) against `host`, or `servername`.
 */
export function authenticate (duplex: Duplex, role: 'client' | 'server', keys: Promise<KeyPair>, options: AuthenticationTlsOptions = NO_OPTIONS, host?: string): Authentication {
  const peer = role === 'client' ? 'server' : 'client'
  let socket: tls.TLSSocket | undefined
  let aborted = false
  const ready = keys.then((keyPair) => new Promise<AuthenticatedTransport>((resolve, reject) => {
    if (aborted) return
    // Options that cannot work with this key fail here, on either side.
    const secureContext = authenticationContext(keyPair, options)
    const halfOpen = duplex instanceof net.Socket && duplex.allowHalfOpen
    const failed = (err: P2snError, tlsSocket: tls.TLSSocket | undefined): void => {
      tlsSocket?.destroy()
      duplex.destroy()
      reject(err)
    }
    const secured = (tlsSocket: tls.TLSSocket): void => {
      socket = tlsSocket
      const certificate = tlsSocket.getPeerX509Certificate()
      if (certificate === undefined) {
        failed(new P2snError('ERR_P2SN_AUTHENTICATION', `the ${peer} presented no tls certificate, so it proved no key; it must run the authenticated mode too`), tlsSocket)
        return
      }
      // The channel's half-close works over TLS as over TCP.
      tlsSocket.allowHalfOpen = halfOpen || tlsSocket.allowHalfOpen
      resolve({ socket: tlsSocket, peerKey: certificate.publicKey })
    }
    const tlsFailed = (err: Error | undefined, tlsSocket: tls.TLSSocket): void => {
      failed(tlsFailure(err, peer, tlsSocket.authorizationError), tlsSocket)
    }
    if (role === 'client') {
      socket = tls.connect({ host, ...options as tls.ConnectionOptions, socket: duplex, secureContext, rejectUnauthorized: checksCa(options) })
      watchClientHandshake(socket, secured, tlsFailed)
      return
    }
    const server = acceptTls(duplex, keyPair, options)
    server.once('secureConnection', secured)
    server.once('tlsClientError', tlsFailed)
  }))
  return {
    ready,
    abort: () => {
      aborted = true
      socket?.destroy()
      duplex.destroy()
    }
  }
}

/** Follows a client's TLS handshake to `secured` or `failed` (with the error, or none when it closed), whichever comes first. */
function watchClientHandshake (tlsSocket: tls.TLSSocket, secured: (tlsSocket: tls.TLSSocket) => void, failed: (err: Error | undefined, tlsSocket: tls.TLSSocket) => void): void {
  const settle = (): void => {
    tlsSocket.removeListener('secureConnect', onSecure)
    tlsSocket.removeListener('error', onError)
    tlsSocket.removeListener('close', onClose)
  }
  const onSecure = (): void => {
    settle()
    secured(tlsSocket)
  }
  const onError = (err: Error): void => {
    settle()
    failed(err, tlsSocket)
  }
  const onClose = (): void => {
    settle()
    failed(undefined, tlsSocket)
  }
  tlsSocket.once('secureConnect', onSecure)
  tlsSocket.once('error', onError)
  tlsSocket.once('close', onClose)
}

/** The error for a TLS handshake with `peer` that failed with `err` (none: the peer closed). */
function tlsFailure (err: Error | undefined, peer: 'client' | 'server', refusal: string | Error | null): P2snError {
  if (err !== undefined && 'syscall' in err) {
    return new P2snError('ERR_P2SN_CONNECTION', `the connection failed before the tls handshake was done: ${err.message}`, { cause: err })
  }
  if (refusal !== null && refusal !== undefined) {
    return new P2snError('ERR_P2SN_AUTHENTICATION', `the ${peer}'s tls certificate was refused (${String(refusal)}); it is not signed by the ca given, or names another host`, { cause: err })
  }
  if (err === undefined) {
    return new P2snError('ERR_P2SN_AUTHENTICATION', `the ${peer} closed the connection during the tls handshake; it does not run the authenticated mode, or refused our certificate`)
  }
  return new P2snError('ERR_P2SN_AUTHENTICATION', `the tls 1.3 handshake with the ${peer} failed (${tlsReason(err)}); it does not run the authenticated mode (a plain p2sn peer, such as the python reference, cannot), or one side's certificate was refused`, { cause: err })
}

/** OpenSSL's reason alone ("wrong version number"), not its whole multi-line error string. */
function tlsReason (err: Error): string {
  const reason = (err as Error & { reason?: unknown }).reason
  return typeof reason === 'string' ? reason : err.message
}
