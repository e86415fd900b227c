/**
 * p2sn: the P2SN protocol as composable Node.js streams.
 * @module
 */
export * from './protocol.js'
export { P2snError, ERROR_CODES, type P2snErrorCode } from './errors.js'
export { FrameSplitter, type FrameSplitterOptions } from './frame-splitter.js'
export { FrameJoiner } from './frame-joiner.js'
export { Base64Codec, encodeBase64, decodeBase64 } from './base64-codec.js'
export { RsaCipher, encryptMessage, decryptMessage, type RsaCipherOptions, type EncryptOptions, type DecryptOptions } from './rsa-cipher.js'
export { opensslEngine, forgeEngine, type RsaEngine, type EngineName } from './rsa-engine.js'
export {
  PublicKey, PrivateKey, generateKeyPair, parsePrivateKey, parsePublicKey, toPem, fingerprint,
  type KeyPair, type PublicKeyInput, type PrivateKeyInput, type GenerateKeyPairOptions
} from './keys.js'
export {
  HandshakeDuplex, type HandshakeOptions, type Role, type ServerKeyEncoding, type PeerInfo, type TraceEvent,
  type FrameStep, type FrameTransport
} from './handshake-duplex.js'
export { Channel, type ChannelOptions, type WrapOptions, type ChannelHandshake } from './channel.js'
export { wrap } from './wrap.js'
export { connect, type ConnectOptions } from './connect.js'
export { Server, createServer, type ServerOptions, type Handler } from './server.js'
export { joinDuplex } from './join-duplex.js'
export { frameDuplex } from './frame-duplex.js'
export { selfSignedCertificate, type AuthenticationTlsOptions } from './authentication.js'
export { RsaPool, type RsaPoolOptions, type PoolDecryptOptions } from './rsa-pool.js'
