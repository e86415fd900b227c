/**
 * Constants of the P2SN wire protocol and this implementation's default limits.
 *
 * Wire facts follow the Python reference (`p2sn` 0.3.0-beta.2); limits are ours, since the
 * reference has none.
 * @module
 */

/** Byte that ends every frame on the wire (ASCII EOT). Base64 text never contains it. */
export const FRAME_TERMINATOR = 0x04

/** Sent in plain by a peer that asks for the other side's public key. */
export const KEYWORD_PUBKEY = 'P2SN:PUBKEY'
/** Encrypted to a freshly received public key: it catches a key damaged on the way, and proves no one holds the key. */
export const KEYWORD_KEYCHECK = 'P2SN:KEYCHECK'
/** Sent in plain when a key check, a key or a ciphertext could not be read. */
export const KEYWORD_ERRORKEY = 'P2SN:ERRORKEY'
/** Sent encrypted, instead of a reply, when the server's handler failed. */
export const KEYWORD_UNEXPECTEDERROR = 'P2SN:UNEXPECTEDERROR'
/**
 * Sent in the authenticated mode only (this project's extension, inside TLS) as the last frame
 * of a side's stream, before it ends: an end of stream without it is a cut, which TLS over TCP
 * does not tell from an end (`ERR_P2SN_TRUNCATED`).
 */
export const KEYWORD_END = 'P2SN:END'

/** Bytes that RSAES-PKCS1-v1_5 padding adds to a block: `00 02`, at least 8 random bytes, `00`. */
export const PKCS1_OVERHEAD = 11

/** Smallest modulus accepted, in bytes: the standard's 1024-bit floor, measured as the reference's key generator does (it often returns 1023-bit moduli). */
export const MIN_MODULUS_BYTES = 128
/** Largest modulus accepted, in bits. Larger keys only serve to make a peer burn CPU. */
export const MAX_MODULUS_BITS = 16384
/** Modulus size of generated keys, in bits (the reference's default). */
export const DEFAULT_KEY_BITS = 2048

/**
 * Default for `maxFrameLength`: the longest frame accepted, terminator excluded, in bytes.
 * 1 MiB holds a message of about 750 KiB with 2048-bit keys.
 */
export const DEFAULT_MAX_FRAME_LENGTH = 1024 * 1024
/**
 * Default for `maxMessageBlocks`: the most RSA blocks one received message may have; a longer
 * one is `ERR_P2SN_MESSAGE_TOO_LONG` before any of it is decrypted. Each block costs a
 * private-key operation, so this bounds the CPU one message can claim: about 31 ms at 2048 bits
 * on a machine doing some 1,000 private operations a second (a full 1 MiB frame was 3,072 of
 * them, 4.4 s). 32 blocks hold 7,840 bytes of plaintext at 2048 bits (3,744 at 1024, 16,032 at
 * 4096); the standard's messages are one block.
 */
export const DEFAULT_MAX_MESSAGE_BLOCKS = 32
/**
 * Longest frame accepted during the handshake, in bytes: enough for the Base64 PEM of a
 * 16384-bit public key (about 3.8 KB), far below the data-frame limit.
 */
export const MAX_HANDSHAKE_FRAME_LENGTH = 8 * 1024
/** Frames each side receives during the handshake (client: steps 2, 4, 6; server: 1, 3, 5). */
export const HANDSHAKE_FRAMES = 3
/** Default for `handshakeTimeout`, in milliseconds. */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000
/** Default for a server's `maxConnections`: open connections beyond it are refused. */
export const DEFAULT_MAX_CONNECTIONS = 10_000
/** Default for a server's `maxPendingHandshakes`: a new connection beyond it drops the oldest handshake under way. */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 256
/** How long a server's `close()` lets its channels finish before it destroys them, in ms. */
export const DEFAULT_DRAIN_TIMEOUT = 10_000
/**
 * How many messages (or frames) an object-mode stream of ours buffers before it pushes back: a
 * channel's readable side, and each layer of a chain composed by hand. Node's default, 16, let
 * one connection of the old dozen-stage chain hold about 16 frames a stage, some 180 MiB with
 * 1 MiB frames.
 */
export const MESSAGE_HIGH_WATER_MARK = 2
