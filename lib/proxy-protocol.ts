/**
 * The PROXY protocol header (HAProxy's, v1 text or v2 binary) that a proxy or load balancer
 * sends before the stream it forwards, decoded from chunks with no stream, timer or socket
 * around it: who the client really is, and where the P2SN stream starts. HAProxy sends it with
 * `send-proxy` / `send-proxy-v2`, nginx with `proxy_protocol on`, and the AWS and Google Cloud
 * load balancers when it is turned on.
 *
 * The spec: https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt. The decoder is
 * strict, since a server that expects the header must refuse a connection without one (the
 * spec forbids guessing): anything the spec does not define is refused, and so is a connection
 * whose first bytes cannot start a header, after at most a few bytes.
 * @module
 */
import { SocketAddress, isIPv4, isIPv6 } from 'node:net'
import { checkLimit } from './arguments.js'
import { P2snError } from './errors.js'

/**
 * The longest v1 header, CRLF included, that the spec allows (an `UNKNOWN` line; `TCP6` takes
 * at most 104): a v1 header with no CRLF within this many bytes is refused.
 */
export const PROXY_V1_MAX_LENGTH = 107

/**
 * Default of {@link ProxyHeaderDecoderOptions.maxHeaderLength}: the 16-byte fixed part of a v2
 * header and 536 bytes after it, room for IPv6 addresses (36 bytes) and the TLVs proxies
 * commonly add: ALPN, authority (SNI), a unique id (128 bytes at most in HAProxy), a summary of
 * the client's TLS, the cloud providers' endpoint ids.
 */
export const DEFAULT_MAX_PROXY_HEADER_LENGTH = 16 + 536

/** A v1 header starts with these 6 bytes. */
const V1_PREFIX = Buffer.from('PROXY ', 'latin1')

/** A v2 header starts with these 12 bytes, chosen to start no v1 header nor any text protocol. */
const V2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1')

/** The fixed part of a v2 header: signature, version and command, family and protocol, length. */
const V2_FIXED_LENGTH = 16

/** The longest v2 header there can be: its length field is 16 bits. */
const V2_MAX_LENGTH = V2_FIXED_LENGTH + 0xffff

/** The largest address block a v2 header is decoded from (two IPv6 addresses, two ports). */
const V2_MAX_ADDRESS_LENGTH = 36

const CR = 0x0d
const LF = 0x0a

/** A v1 port: decimal, 0 to 65535, with no sign and no leading zero. */
const V1_PORT = /^(?:0|[1-9][0-9]{0,4})$/

/** What a v2 family-and-protocol byte says, for each value the spec defines. */
interface V2Family {
  /** As errors name it. */
  readonly name: string
  /** The family reported, for the two whose addresses are decoded. */
  readonly family: 'IPv4' | 'IPv6' | undefined
  /** Bytes of addresses and ports at the start of the rest of the header (its length is at least this). */
  readonly addressLength: number
  /** UDP, or a unix datagram socket: no stream that P2SN could run over. */
  readonly datagram: boolean
}

/** The family-and-protocol byte's defined values (high nibble the family, low the transport); any other is refused. */
const V2_FAMILIES: ReadonlyMap<number, V2Family> = new Map([
  [0x00, { name: 'unspec', family: undefined, addressLength: 0, datagram: false }],
  [0x11, { name: 'tcp over ipv4', family: 'IPv4', addressLength: 12, datagram: false }],
  [0x12, { name: 'udp over ipv4', family: undefined, addressLength: 12, datagram: true }],
  [0x21, { name: 'tcp over ipv6', family: 'IPv6', addressLength: 36, datagram: false }],
  [0x22, { name: 'udp over ipv6', family: undefined, addressLength: 36, datagram: true }],
  [0x31, { name: 'a unix stream socket', family: undefined, addressLength: 216, datagram: false }],
  [0x32, { name: 'a unix datagram socket', family: undefined, addressLength: 216, datagram: true }]
])

/** Options of {@link ProxyHeaderDecoder}. */
export interface ProxyHeaderDecoderOptions {
  /**
   * Longest v2 header accepted, in bytes, the 16-byte fixed part and any TLVs included; a
   * longer one is refused as soon as its length field arrives, before any of it is read. At
   * least 52 (a header for tcp over IPv6 without TLVs); above 65551 (the most the length field
   * can say) counts as 65551. Default {@link DEFAULT_MAX_PROXY_HEADER_LENGTH} (552). A v1
   * header is always held to {@link PROXY_V1_MAX_LENGTH} (107), as the spec says.
   */
  maxHeaderLength?: number
}

/**
 * A decoded PROXY protocol header. The four address fields are set together, when
 * {@link family} is, and are `undefined` otherwise: the connection's own addresses then apply,
 * so `header.sourceAddress ?? socket.remoteAddress` is the client's address either way.
 */
export interface ProxyHeader {
  /** 1 for the text header, 2 for the binary one. */
  readonly version: 1 | 2
  /**
   * True for a v2 `LOCAL` command: the proxy opened this connection itself (a health check,
   * say) and forwards no client; its family and addresses are ignored, as the spec says.
   */
  readonly local: boolean
  /**
   * `'IPv4'` or `'IPv6'` for a TCP connection forwarded from those addresses; `undefined` when
   * the header gives no address to use: v1 `UNKNOWN`, v2 `LOCAL`, v2 `UNSPEC`, or a v2 unix
   * stream socket (its paths are not decoded).
   */
  readonly family: 'IPv4' | 'IPv6' | undefined
  /**
   * The client's address, as Node writes a socket's (IPv6 in the short form of RFC 5952, an
   * IPv4-mapped one as `::ffff:1.2.3.4`).
   */
  readonly sourceAddress: string | undefined
  /** The client's port. */
  readonly sourcePort: number | undefined
  /** The address the client connected to (the proxy's, usually), written like {@link sourceAddress}. */
  readonly destinationAddress: string | undefined
  /** The port the client connected to. */
  readonly destinationPort: number | undefined
  /** The header's length in bytes, its CRLF or its TLVs included. */
  readonly length: number
  /**
   * The bytes after the header in the chunk that ended it: the start of the stream the proxy
   * forwards (P2SN's first bytes), to hand on before any later chunk. A view of that chunk,
   * not a copy; empty when the header ended with the chunk.
   */
  readonly rest: Buffer
}

/**
 * Decodes the PROXY protocol header (v1 or v2) at the start of a connection, handed over chunk
 * by chunk; synchronous and free of streams, timers and sockets. It has no time limit of its
 * own: the caller's (the handshake timeout) must cover the header too.
 *
 * Use: {@link write} each chunk until it returns the {@link ProxyHeader}; from then on the
 * connection's bytes belong to the stream behind the header, starting with the header's
 * {@link ProxyHeader.rest}. Any failure throws a {@link P2snError} `ERR_P2SN_PROXY_PROTOCOL`;
 * the decoder is then {@link failed}, holds nothing and drops all input.
 *
 * Limits, checked before anything is kept: the first byte decides the version, and each byte
 * of the v1 prefix (`PROXY `) or the v2 signature is checked as it arrives, so other input
 * (`P2SN:PUBKEY`, a TLS hello) is refused by its first or second byte. A v1 header must end
 * within {@link PROXY_V1_MAX_LENGTH} bytes. A v2 header is refused as soon as its length field
 * says it is longer than `maxHeaderLength`, and only its fixed part and addresses are kept,
 * never its TLVs (counted, skipped, not parsed): at most 107 bytes are held for v1 and 52 for
 * v2, see {@link bufferedLength}.
 *
 * What is refused besides: v1 other than `TCP4`, `TCP6` or `UNKNOWN`, fields not separated by
 * single spaces, an address that is not of the line's family (an IPv6 zone such as `%eth0`
 * included), a port outside 0-65535 or written with a sign or a leading zero, a line not ended
 * by CRLF; v2 of a version other than 2, a command other than `LOCAL` or `PROXY`, a family and
 * protocol byte the spec does not define, a length shorter than the family's addresses. A v2
 * `PROXY` over UDP (or a unix datagram socket) is refused too: P2SN needs a stream, so such a
 * header means a misconfigured proxy. Its `UNSPEC` family and unix stream sockets are accepted,
 * without addresses.
 *
 * @example
 * const decoder = new ProxyHeaderDecoder()
 * socket.on('data', function onData (chunk) {
 *   const header = decoder.write(chunk) // throws ERR_P2SN_PROXY_PROTOCOL: destroy the socket
 *   if (header === undefined) return
 *   socket.off('data', onData)
 *   start(header.sourceAddress ?? socket.remoteAddress, header.rest)
 * })
 */
export class ProxyHeaderDecoder {
  /** The v2 limit in force, in bytes, whole header. */
  readonly maxHeaderLength: number

  // The version, told by the first byte (0 before it), and the header once decoded
  #version: 0 | 1 | 2 = 0
  #header: ProxyHeader | undefined
  #failed = false

  // The bytes kept: the v1 line so far, or the v2 fixed part and addresses
  #held: Buffer | undefined
  #heldLength = 0

  // v2, once its fixed part is in: the whole header's length, the bytes of it still to come,
  // how many of them (the addresses) to keep, what the fixed part said
  #length = 0
  #remaining = 0
  #toKeep = 0
  #local = false
  #family: 'IPv4' | 'IPv6' | undefined

  /**
   * @param options - the v2 limit; `maxHeaderLength` a whole number of at least 52, or
   * Infinity, else `ERR_P2SN_INVALID_ARGUMENT`
   */
  constructor (options: ProxyHeaderDecoderOptions = {}) {
    const limit = checkLimit('maxHeaderLength', options.maxHeaderLength, DEFAULT_MAX_PROXY_HEADER_LENGTH, V2_FIXED_LENGTH + V2_MAX_ADDRESS_LENGTH)
    this.maxHeaderLength = Math.min(limit, V2_MAX_LENGTH)
  }

  /** The header, once {@link write} has decoded it; `undefined` before. */
  get header (): ProxyHeader | undefined {
    return this.#header
  }

  /** True once {@link write} (or {@link end}) has thrown: all input is dropped. */
  get failed (): boolean {
    return this.#failed
  }

  /**
   * Bytes of the header kept so far: never more than 107 (v1) or 52 (v2), and 0 once the
   * header is decoded or the decoder failed.
   */
  get bufferedLength (): number {
    return this.#heldLength
  }

  /**
   * Hands over the next chunk of the connection. Returns the header once this chunk completes
   * it (the bytes after it are its {@link ProxyHeader.rest}), else `undefined`. Throws a
   * {@link P2snError} `ERR_P2SN_PROXY_PROTOCOL` as soon as the input cannot be a valid header;
   * after that, chunks are dropped. A write after the header was decoded throws
   * `ERR_P2SN_INVALID_ARGUMENT`: those bytes belong to the stream behind it.
   */
  write (chunk: Buffer): ProxyHeader | undefined {
    if (this.#header !== undefined) {
      throw new P2snError('ERR_P2SN_INVALID_ARGUMENT', 'a chunk was written after the proxy protocol header was decoded; hand it to the stream behind the header instead')
    }
    if (this.#failed || chunk.length === 0) return undefined
    if (this.#version === 0) {
      // The first byte decides: 'P' can only start v1, CR only v2.
      if (chunk[0] === V1_PREFIX[0]) {
        this.#version = 1
        this.#held = Buffer.alloc(PROXY_V1_MAX_LENGTH)
      } else if (chunk[0] === V2_SIGNATURE[0]) {
        this.#version = 2
        this.#held = Buffer.alloc(V2_FIXED_LENGTH + V2_MAX_ADDRESS_LENGTH)
      } else {
        this.#refuseSignature(0, chunk[0]!)
      }
    }
    return this.#version === 1 ? this.#writeV1(chunk) : this.#writeV2(chunk)
  }

  /**
   * The input ended. Throws `ERR_P2SN_PROXY_PROTOCOL` when it ended inside a header; nothing
   * when no byte came at all (a bare connect and close, as some health checks do) or the header
   * was whole. Drops what was held either way.
   */
  end (): void {
    if (this.#failed || this.#header !== undefined || this.#version === 0) return
    // v2's TLVs are counted, not held: past its fixed part, what came is the length less what is to come.
    const received = this.#length === 0 ? this.#heldLength : this.#length - this.#remaining
    this.#refuse(`the connection ended ${received} bytes into its proxy protocol v${this.#version} header; the proxy closed early or does not send the header`)
  }

  /** Takes the v1 line: up to the first LF, which must come within {@link PROXY_V1_MAX_LENGTH} bytes. */
  #writeV1 (chunk: Buffer): ProxyHeader | undefined {
    const held = this.#held!
    const start = this.#heldLength
    const room = PROXY_V1_MAX_LENGTH - start
    const window = Math.min(chunk.length, room)
    const lf = chunk.subarray(0, window).indexOf(LF)
    const take = lf === -1 ? window : lf + 1
    // Checked before anything is kept: the prefix, then the limit.
    this.#matchSignature(V1_PREFIX, chunk, take)
    if (lf === -1 && start + take === PROXY_V1_MAX_LENGTH) {
      this.#refuse(`the proxy protocol v1 header has no crlf within ${PROXY_V1_MAX_LENGTH} bytes, the most the spec allows; the peer does not send a valid header`)
    }
    chunk.copy(held, start, 0, take)
    this.#heldLength = start + take
    if (lf === -1) return undefined
    const length = this.#heldLength
    if (held[length - 2] !== CR) this.#refuse('the proxy protocol v1 header ends with a bare lf, not crlf; the peer does not send a valid header')
    return this.#decodeV1(held.toString('latin1', 0, length - 2), length, chunk.subarray(take))
  }

  /** The fields of a whole v1 line (CRLF excluded), strictly checked. */
  #decodeV1 (line: string, length: number, rest: Buffer): ProxyHeader {
    const fields = line.split(' ')
    const protocol = fields[1]
    // The spec has the receiver ignore whatever follows UNKNOWN.
    if (protocol === 'UNKNOWN') return this.#finish(1, false, undefined, [], length, rest)
    if (protocol !== 'TCP4' && protocol !== 'TCP6') {
      this.#refuse(`the proxy protocol v1 header's protocol is ${quote(protocol ?? '')}, not TCP4, TCP6 or UNKNOWN; the peer does not send a valid header`)
    }
    if (fields.length !== 6) {
      this.#refuse(`the proxy protocol v1 header has ${fields.length} fields, not 6 separated by single spaces (PROXY ${protocol} <source> <destination> <source port> <destination port>); the peer does not send a valid header`)
    }
    const family = protocol === 'TCP4' ? 'IPv4' : 'IPv6'
    const [, , source, destination, sourcePort, destinationPort] = fields as [string, string, string, string, string, string]
    return this.#finish(1, false, family, [
      this.#v1Address(family, 'source', source),
      this.#v1Port('source', sourcePort),
      this.#v1Address(family, 'destination', destination),
      this.#v1Port('destination', destinationPort)
    ], length, rest)
  }

  /** A v1 address of `family`, as Node writes it. */
  #v1Address (family: 'IPv4' | 'IPv6', which: string, text: string): string {
    if (family === 'IPv4' && isIPv4(text)) return text
    // isIPv6 allows a zone (`%eth0`), which a proxy has no business sending and SocketAddress drops.
    if (family === 'IPv6' && isIPv6(text) && !text.includes('%')) return ipv6(text)
    this.#refuse(`the proxy protocol v1 header's ${which} address ${quote(text)} is not an ${family.toLowerCase()} address; the peer does not send a valid header`)
  }

  /** A v1 port. */
  #v1Port (which: string, text: string): number {
    const port = V1_PORT.test(text) ? Number(text) : NaN
    if (!(port <= 0xffff)) {
      this.#refuse(`the proxy protocol v1 header's ${which} port ${quote(text)} is not a port (0-65535, decimal, no sign or leading zero); the peer does not send a valid header`)
    }
    return port
  }

  /** Takes the v2 fixed part, then the rest of the header: the addresses kept, the TLVs after them only counted. */
  #writeV2 (chunk: Buffer): ProxyHeader | undefined {
    const held = this.#held!
    let offset = 0
    if (this.#heldLength < V2_FIXED_LENGTH) {
      offset = Math.min(chunk.length, V2_FIXED_LENGTH - this.#heldLength)
      this.#matchSignature(V2_SIGNATURE, chunk, offset)
      chunk.copy(held, this.#heldLength, 0, offset)
      this.#heldLength += offset
      if (this.#heldLength < V2_FIXED_LENGTH) return undefined
      this.#readV2Fixed(held)
    }
    const take = Math.min(chunk.length - offset, this.#remaining)
    const keep = Math.min(take, this.#toKeep)
    chunk.copy(held, this.#heldLength, offset, offset + keep)
    this.#heldLength += keep
    this.#toKeep -= keep
    this.#remaining -= take
    offset += take
    if (this.#remaining > 0) return undefined
    return this.#decodeV2(held, chunk.subarray(offset))
  }

  /** Checks the v2 fixed part and sets what to take after it; nothing of the rest is read before. */
  #readV2Fixed (held: Buffer): void {
    const version = held[12]! >> 4
    const command = held[12]! & 0x0f
    const length = held.readUInt16BE(14)
    if (version !== 2) this.#refuse(`the proxy protocol v2 header says version ${version}, not 2; the proxy sends a version this decoder does not know`)
    if (command > 1) this.#refuse(`the proxy protocol v2 header's command is ${command}, neither LOCAL (0) nor PROXY (1); the peer does not send a valid header`)
    const family = V2_FAMILIES.get(held[13]!)
    if (family === undefined) {
      this.#refuse(`the proxy protocol v2 header's family and protocol byte is 0x${hex(held[13]!)}, which the spec does not define; the peer does not send a valid header`)
    }
    if (V2_FIXED_LENGTH + length > this.maxHeaderLength) {
      this.#refuse(`the proxy protocol v2 header is ${V2_FIXED_LENGTH + length} bytes long, more than maxHeaderLength (${this.maxHeaderLength}); have the proxy send fewer tlvs, or raise the limit`)
    }
    this.#local = command === 0
    if (!this.#local) {
      if (family.datagram) this.#refuse(`the proxy protocol v2 header forwards ${family.name}; p2sn runs over a stream: have the proxy forward tcp`)
      if (length < family.addressLength) {
        this.#refuse(`the proxy protocol v2 header's length ${length} is too short for the addresses of ${family.name} (${family.addressLength} bytes); the peer does not send a valid header`)
      }
      this.#family = family.family
    }
    // LOCAL's addresses are ignored, as the spec says; only IPv4's and IPv6's are kept.
    this.#toKeep = this.#family === undefined ? 0 : family.addressLength
    this.#length = V2_FIXED_LENGTH + length
    this.#remaining = length
  }

  /** The whole v2 header, from its fixed part and addresses. */
  #decodeV2 (held: Buffer, rest: Buffer): ProxyHeader {
    const length = this.#length
    const family = this.#family
    if (family === undefined) return this.#finish(2, this.#local, undefined, [], length, rest)
    // Two addresses, then two ports, all in network order.
    const size = family === 'IPv4' ? 4 : 16
    const at = V2_FIXED_LENGTH
    const address = (bytes: Buffer): string => family === 'IPv4' ? bytes.join('.') : ipv6(hexGroups(bytes))
    return this.#finish(2, false, family, [
      address(held.subarray(at, at + size)),
      held.readUInt16BE(at + 2 * size),
      address(held.subarray(at + size, at + 2 * size)),
      held.readUInt16BE(at + 2 * size + 2)
    ], length, rest)
  }

  /** Keeps the header and drops what was held. */
  #finish (version: 1 | 2, local: boolean, family: 'IPv4' | 'IPv6' | undefined, addresses: [string, number, string, number] | [], length: number, rest: Buffer): ProxyHeader {
    const [sourceAddress, sourcePort, destinationAddress, destinationPort] = addresses
    this.#header = { version, local, family, sourceAddress, sourcePort, destinationAddress, destinationPort, length, rest }
    this.#held = undefined
    this.#heldLength = 0
    return this.#header
  }

  /** Refuses the first of `chunk`'s first `take` bytes that differs from `signature` where it falls (past the bytes held). */
  #matchSignature (signature: Buffer, chunk: Buffer, take: number): void {
    const start = this.#heldLength
    const end = Math.min(take, signature.length - start)
    for (let i = 0; i < end; i++) {
      if (chunk[i] !== signature[start + i]) this.#refuseSignature(start + i, chunk[i]!)
    }
  }

  /** Refuses input whose byte `position` rules out both versions' start. */
  #refuseSignature (position: number, byte: number): never {
    const expected = this.#version === 2 ? 'the proxy protocol v2 signature' : this.#version === 1 ? '"PROXY "' : '"PROXY " or the proxy protocol v2 signature'
    this.#refuse(`the connection does not start with a proxy protocol header: byte ${position} is 0x${hex(byte)}, where ${expected} goes; with the proxy protocol on, every connection must come through a proxy that sends the header`)
  }

  /** Fails for good: drops what was held, then throws `ERR_P2SN_PROXY_PROTOCOL` with `message`. */
  #refuse (message: string): never {
    this.#held = undefined
    this.#heldLength = 0
    this.#failed = true
    throw new P2snError('ERR_P2SN_PROXY_PROTOCOL', message)
  }
}

/** `byte` as two hex digits. */
function hex (byte: number): string {
  return byte.toString(16).padStart(2, '0')
}

/** 16 bytes as eight colon-separated groups of hex, an IPv6 address in its long form. */
function hexGroups (bytes: Buffer): string {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16))
  return groups.join(':')
}

/** A valid IPv6 address as Node writes a socket's: RFC 5952's short form, `::ffff:` + IPv4 when mapped. */
function ipv6 (address: string): string {
  return new SocketAddress({ address, family: 'ipv6' }).address
}

/** A field of a v1 line for an error message: quoted, control characters escaped, at most 60 characters. */
function quote (text: string): string {
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}...` : text)
}
