/**
 * p2sn: the P2SN protocol as composable Node.js streams. The package is built in floors, each
 * importing only from those below it:
 *
 * - the core (`core/`, not exported as such): the frame decoder and encoder, strict Base64,
 *   RSA messages, the handshake as a state machine per role and the frames after it, with no
 *   streams, timers or sockets; its functions {@link encodeBase64}, {@link decodeBase64},
 *   {@link encryptMessage} and {@link decryptMessage} are exported;
 * - the layers, thin stream shells over the core, to compose by hand around any duplex:
 *   {@link FrameSplitter}, {@link FrameJoiner}, {@link Base64Codec}, {@link RsaCipher},
 *   {@link HandshakeDuplex}, with {@link frameDuplex} to frame a byte duplex and
 *   {@link joinDuplex} to make one of stdio;
 * - the channel: {@link Channel}, one Duplex per connection that drives the core over the
 *   socket itself, made by {@link wrap} around any byte duplex or by {@link connect};
 * - the server: {@link createServer}, a {@link Server} that makes a channel of each connection
 *   (reading a PROXY protocol header first with `proxyProtocol`);
 * - the client that survives restarts: {@link createClient}, a {@link Client} that keeps one
 *   channel open, reconnecting with backoff;
 * - the scanner (`scan/`): {@link scanServer}, an audit of any P2SN server over its own
 *   scripted connections (conformance, padding oracle, limits, authentication), which is what
 *   `p2sn scan` runs and what our own hostile tests probe with.
 *
 * Under the core lie the protocol's constants, the errors ({@link P2snError},
 * {@link ERROR_CODES}), keys ({@link generateKeyPair} and the rest) and the RSA engines. The
 * worker pool ({@link RsaPool}) and the authenticated mode's TLS ({@link selfSignedCertificate})
 * sit with the layers, which share them with the channel.
 * @module
 */
export * from './protocol.js'
export { P2snError, ERROR_CODES, type P2snErrorCode } from './errors.js'
export { FrameSplitter, type FrameSplitterOptions } from './frame-splitter.js'
export { FrameJoiner } from './frame-joiner.js'
export { Base64Codec, encodeBase64, decodeBase64 } from './base64-codec.js'
export type { InvalidInputOptions } from './message-transform.js'
export {
  RsaCipher, encryptMessage, decryptMessage,
  type RsaCipherOptions, type EncryptorOptions, type EncryptOptions, type DecryptOptions
} from './rsa-cipher.js'
export { opensslEngine, forgeEngine, type RsaEngine, type EngineName } from './rsa-engine.js'
export {
  PublicKey, PrivateKey, generateKeyPair, parsePrivateKey, parsePublicKey, toPem, fingerprint,
  type KeyPair, type PublicKeyInput, type PrivateKeyInput, type GenerateKeyPairOptions, type RsaNumbers
} from './keys.js'
export {
  HandshakeDuplex, type HandshakeOptions, type Role, type ServerKeyEncoding, type PeerInfo, type TraceEvent,
  type FrameStep, type FrameTransport, type HandshakeDuplexEvents
} from './handshake-duplex.js'
export { Channel, type ChannelOptions, type WrapOptions, type ChannelHandshake, type ChannelEvents, type RequestOptions } from './channel.js'
export { wrap } from './wrap.js'
export { connect, type ConnectOptions } from './connect.js'
export { Server, createServer, type ServerOptions, type Handler, type ServerEvents } from './server.js'
export { Client, createClient, type ClientOptions, type ClientEvents } from './client.js'
export { joinDuplex } from './join-duplex.js'
export { frameDuplex } from './frame-duplex.js'
export { selfSignedCertificate, type AuthenticationTlsOptions } from './authentication.js'
export { RsaPool, type RsaPoolOptions, type PoolDecryptOptions } from './rsa-pool.js'
export {
  scanServer, DEFAULT_SCAN_TIMEOUT, DEFAULT_SILENCE_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, DEFAULT_MAX_PROBE_BYTES, type ScanOptions
} from './scan/scan.js'
export { formatScanReport, SCAN_SECTIONS, type ScanReport, type ScanItem, type ScanSection, type Verdict } from './scan/report.js'
export { CIPHERTEXT_CLASSES, ciphertextOf, type CiphertextClass } from './scan/ciphertext-classes.js'
