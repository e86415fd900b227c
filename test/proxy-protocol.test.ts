import { expect } from 'chai'
import fc from 'fast-check'
import {
  DEFAULT_MAX_PROXY_HEADER_LENGTH, PROXY_V1_MAX_LENGTH, ProxyHeaderDecoder,
  type ProxyHeader, type ProxyHeaderDecoderOptions
} from '../lib/proxy-protocol.js'
import { P2snError } from '../lib/errors.js'
import { rechunk, seededRandom, type ChunkPlan } from './helpers/chunking.js'
import { expectP2snErrorSync } from './helpers/errors.js'

/** The most a v2 decoder holds: the fixed part, two IPv6 addresses and two ports. */
const V2_MAX_HELD = 16 + 36

/** What follows the header in these tests: a whole P2SN:PUBKEY frame, then bytes a text parser would trip on. */
const STREAM = Buffer.concat([Buffer.from('P2SN:PUBKEY\x04QUJD'), Buffer.from([0x00, 0x0d, 0x0a, 0xff, 0x04])])

/** The v2 signature, written out here rather than taken from the code under test. */
const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

/** A v2 TLV: type, 16-bit length, value. */
function tlv (type: number, value: string | Buffer): Buffer {
  const bytes = Buffer.from(value)
  const head = Buffer.alloc(3)
  head[0] = type
  head.writeUInt16BE(bytes.length, 1)
  return Buffer.concat([head, bytes])
}

/** Two ports, 16 bits each. */
function ports (source: number, destination: number): Buffer {
  const bytes = Buffer.alloc(4)
  bytes.writeUInt16BE(source, 0)
  bytes.writeUInt16BE(destination, 2)
  return bytes
}

/** A v2 IPv4 address block: source, destination, their ports. */
function ipv4Block (source: string, destination: string, sourcePort: number, destinationPort: number): Buffer {
  const address = (text: string): Buffer => Buffer.from(text.split('.').map(Number))
  return Buffer.concat([address(source), address(destination), ports(sourcePort, destinationPort)])
}

/** A v2 IPv6 address block, each address given as its 16 bytes in hex. */
function ipv6Block (source: string, destination: string, sourcePort: number, destinationPort: number): Buffer {
  return Buffer.concat([Buffer.from(source, 'hex'), Buffer.from(destination, 'hex'), ports(sourcePort, destinationPort)])
}

interface V2Parts {
  /** Version and command byte. Default 0x21: version 2, PROXY. */
  versionCommand?: number
  /** Family and protocol byte. Default 0x11: TCP over IPv4. */
  family?: number
  /** The address block. Default an IPv4 one. */
  addresses?: Buffer
  /** TLVs after the addresses. */
  tlvs?: Buffer[]
  /** The length field, when it must lie. Default the true length. */
  length?: number
}

const IPV4_BLOCK = ipv4Block('192.0.2.1', '198.51.100.2', 56324, 443)

/** A v2 header built from its parts. */
function v2 (parts: V2Parts = {}): Buffer {
  const body = Buffer.concat([parts.addresses ?? IPV4_BLOCK, ...(parts.tlvs ?? [])])
  const fixed = Buffer.alloc(4)
  fixed[0] = parts.versionCommand ?? 0x21
  fixed[1] = parts.family ?? 0x11
  fixed.writeUInt16BE(parts.length ?? body.length, 2)
  return Buffer.concat([SIGNATURE, fixed, body])
}

/** The usual TLVs of HAProxy and the cloud load balancers. */
const COMMON_TLVS = [
  tlv(0x01, 'h2'), // ALPN
  tlv(0x02, 'p2sn.example.org'), // authority (SNI)
  tlv(0x05, 'a'.repeat(128)), // unique id, HAProxy's longest
  tlv(0x20, Buffer.concat([Buffer.from([0x07, 0, 0, 0, 0]), tlv(0x21, 'TLSv1.3'), tlv(0x22, 'client')])), // SSL
  tlv(0xea, Buffer.concat([Buffer.from([0x01]), Buffer.from('vpce-0123456789abcdef0')])), // AWS endpoint id
  tlv(0x04, Buffer.alloc(10)) // NOOP
]

/** What a decoded header says, but `rest`. */
type Fields = Omit<ProxyHeader, 'rest'>

/** The most a decoder may hold for input starting with `bytes`' first byte. */
function heldLimit (bytes: Buffer): number {
  return bytes[0] === 0x0d ? V2_MAX_HELD : PROXY_V1_MAX_LENGTH
}

/**
 * Feeds `bytes`, cut up as `plan` says, to a fresh decoder, checking after every chunk that it
 * holds no more than the limit, and returns the header's fields and everything after it: its
 * `rest` and the chunks after the one that ended it.
 */
function decode (bytes: Buffer, plan: ChunkPlan, options?: ProxyHeaderDecoderOptions): { fields: Fields, after: Buffer } {
  const decoder = new ProxyHeaderDecoder(options)
  const later: Buffer[] = []
  let header: ProxyHeader | undefined
  for (const chunk of rechunk(bytes, plan)) {
    if (header !== undefined) {
      later.push(chunk)
      continue
    }
    header = decoder.write(chunk)
    if (header === undefined) {
      expect(decoder.bufferedLength).to.be.at.most(heldLimit(bytes))
    } else {
      expect(decoder.header).to.equal(header)
      expect(decoder.bufferedLength).to.equal(0)
    }
  }
  expect(header, 'a header').not.to.equal(undefined)
  decoder.end()
  const { rest, ...fields } = header!
  return { fields, after: Buffer.concat([rest, ...later]) }
}

/** The plans every input is fed with: whole, a byte at a time, seeded random splits. */
const PLANS: ReadonlyArray<readonly [string, ChunkPlan]> = [
  ['whole', []], ['a byte at a time', 'byte'],
  ...[1, 2, 3, 4, 5].map((seed) => [`random splits (seed ${seed})`, seededRandom(seed)] as const)
]

/**
 * Asserts that `header` followed by {@link STREAM} decodes to `fields` and gives STREAM back
 * whole, fed whole, a byte at a time, in random splits and cut once at every position.
 */
function expectDecoded (header: Buffer | string, fields: Partial<Fields>, options?: ProxyHeaderDecoderOptions): void {
  const bytes = Buffer.concat([Buffer.from(header), STREAM])
  const expected: Fields = {
    sourceAddress: undefined, sourcePort: undefined, destinationAddress: undefined, destinationPort: undefined,
    family: undefined, local: false, version: bytes[0] === 0x0d ? 2 : 1, length: header.length, ...fields
  }
  const plans = [...PLANS]
  for (let cut = 1; cut < bytes.length; cut++) plans.push([`cut at ${cut}`, [cut]])
  for (const [name, plan] of plans) {
    const { fields: got, after } = decode(bytes, plan, options)
    expect(got, name).to.deep.equal(expected)
    expect(after, `${name}: the stream after the header`).to.deep.equal(STREAM)
  }
}

/** The error `fn` threw, or undefined. */
function attempt (fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}

/**
 * Feeds `bytes`, cut up as `plan` says, to a fresh decoder until it throws (at the end of the
 * input, `end()` must); asserts that it throws ERR_P2SN_PROXY_PROTOCOL, never holding more than
 * the limit, then holds nothing and drops input. Returns the error and how many bytes it had
 * been given then.
 */
function refuse (bytes: Buffer | string, plan: ChunkPlan = [], options?: ProxyHeaderDecoderOptions): { error: P2snError, fed: number } {
  const input = Buffer.from(bytes)
  const decoder = new ProxyHeaderDecoder(options)
  let fed = 0
  let failure: unknown
  for (const chunk of rechunk(input, plan)) {
    fed += chunk.length
    let header: ProxyHeader | undefined
    failure = attempt(() => { header = decoder.write(chunk) })
    if (failure !== undefined) break
    expect(header, 'no header from bad input').to.equal(undefined)
    expect(decoder.bufferedLength).to.be.at.most(heldLimit(input))
  }
  failure ??= attempt(() => { decoder.end() })
  const error = expectP2snErrorSync(() => { throw failure }, 'ERR_P2SN_PROXY_PROTOCOL')
  expect(error.message).to.match(/^[^A-Z]/, 'a lowercase message')
  expect(decoder.failed).to.equal(true)
  expect(decoder.bufferedLength).to.equal(0)
  expect(decoder.write(v2())).to.equal(undefined, 'input after the failure is dropped')
  expect(decoder.header).to.equal(undefined)
  decoder.end()
  return { error, fed }
}

/** Asserts that `bytes` is refused whole, a byte at a time and in random splits, with a message matching `pattern`. */
function expectRefused (bytes: Buffer | string, pattern: RegExp, options?: ProxyHeaderDecoderOptions): void {
  for (const [name, plan] of PLANS) {
    expect(refuse(bytes, plan, options).error.message, name).to.match(pattern)
  }
}

/** How many bytes, fed one at a time, it takes to refuse `bytes`. */
function refusedAfter (bytes: Buffer | string, options?: ProxyHeaderDecoderOptions): number {
  return refuse(bytes, 'byte', options).fed
}

/** A v1 line for TCP4 or TCP6 from its fields. */
function v1 (protocol: string, source: string, destination: string, sourcePort: string | number, destinationPort: string | number): string {
  return `PROXY ${protocol} ${source} ${destination} ${sourcePort} ${destinationPort}\r\n`
}

const FULL_IPV6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'

describe('ProxyHeaderDecoder', () => {
  describe('v1', () => {
    it('decodes TCP4', () => {
      const line = v1('TCP4', '192.0.2.1', '198.51.100.2', 56324, 443)
      expectDecoded(line, { family: 'IPv4', sourceAddress: '192.0.2.1', sourcePort: 56324, destinationAddress: '198.51.100.2', destinationPort: 443 })
    })

    it('decodes TCP6, writing addresses as Node does', () => {
      expectDecoded(v1('TCP6', '2001:DB8:0:0:0:0:0:1', '2001:db8::2', 65535, 0), {
        family: 'IPv6', sourceAddress: '2001:db8::1', sourcePort: 65535, destinationAddress: '2001:db8::2', destinationPort: 0
      })
      expectDecoded(v1('TCP6', '::ffff:192.0.2.1', '::1', 1, 2), {
        family: 'IPv6', sourceAddress: '::ffff:192.0.2.1', sourcePort: 1, destinationAddress: '::1', destinationPort: 2
      })
    })

    it('decodes the longest TCP6 line (104 bytes)', () => {
      const line = v1('TCP6', FULL_IPV6, FULL_IPV6, 65535, 65535)
      expect(line.length).to.equal(104)
      expectDecoded(line, { family: 'IPv6', sourceAddress: FULL_IPV6, sourcePort: 65535, destinationAddress: FULL_IPV6, destinationPort: 65535 })
    })

    it('decodes UNKNOWN, with or without the fields the spec has it ignore, up to 107 bytes', () => {
      expectDecoded('PROXY UNKNOWN\r\n', {})
      const longest = v1('UNKNOWN', FULL_IPV6, FULL_IPV6, 65535, 65535)
      expect(longest.length).to.equal(PROXY_V1_MAX_LENGTH)
      expectDecoded(longest, {})
      expectDecoded('PROXY UNKNOWN anything at all\r\n', {})
    })

    it('refuses a line with no CRLF within 107 bytes, holding at most 107', () => {
      const tooLong = v1('UNKNOWN', FULL_IPV6, FULL_IPV6, 65535, '655350')
      expect(tooLong.length).to.equal(PROXY_V1_MAX_LENGTH + 1)
      expectRefused(tooLong, /no crlf within 107 bytes/)
      expect(refusedAfter(tooLong)).to.equal(PROXY_V1_MAX_LENGTH)
      // In one large chunk: refused before any of it is kept.
      const decoder = new ProxyHeaderDecoder()
      expectP2snErrorSync(() => decoder.write(Buffer.from(`PROXY ${'A'.repeat(64 * 1024)}`)), 'ERR_P2SN_PROXY_PROTOCOL')
      expect(decoder.bufferedLength).to.equal(0)
    })

    it('refuses a line ended by a bare LF, or with a stray CR', () => {
      expectRefused('PROXY UNKNOWN\n', /bare lf/)
      expectRefused(`${v1('TCP4', '192.0.2.1', '198.51.100.2', 1, 2).slice(0, -2)}\r\r\n`, /port "2\\r"/)
      expectRefused('PROXY TCP4 192.0.2.1\r 198.51.100.2 1 2\r\n', /address "192\.0\.2\.1\\r"/)
    })

    it('refuses a protocol other than TCP4, TCP6 and UNKNOWN', () => {
      for (const protocol of ['TCP5', 'tcp4', 'UDP4', 'UNKNOWNX', '', ' TCP4']) {
        expectRefused(v1(protocol, '192.0.2.1', '198.51.100.2', 1, 2), /protocol is ".*", not TCP4, TCP6 or UNKNOWN/)
      }
      expectRefused('PROXY \r\n', /protocol is ""/)
    })

    it('refuses fields not separated by single spaces, missing or extra', () => {
      const refused = [
        'PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n', 'PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n',
        'PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n', 'PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n',
        'PROXY TCP4 192.0.2.1\t198.51.100.2 1 2\r\n', 'PROXY TCP4\r\n'
      ]
      for (const line of refused) expectRefused(line, /fields, not 6|address|port/)
    })

    it('refuses an address that is not of the line\'s family', () => {
      const bad: Array<[string, string]> = [
        ['TCP4', '2001:db8::1'], ['TCP4', '256.1.1.1'], ['TCP4', '01.2.3.4'], ['TCP4', '1.2.3'], ['TCP4', 'localhost'],
        ['TCP4', '::ffff:1.2.3.4'], ['TCP6', '192.0.2.1'], ['TCP6', 'fe80::1%eth0'], ['TCP6', '1::2::3'], ['TCP6', '[::1]'],
        ['TCP6', '']
      ]
      for (const [protocol, address] of bad) {
        expectRefused(v1(protocol, address, protocol === 'TCP4' ? '192.0.2.1' : '::1', 1, 2), /source address ".*" is not an ipv[46] address/)
        expectRefused(v1(protocol, protocol === 'TCP4' ? '192.0.2.1' : '::1', address, 1, 2), /destination address ".*" is not an ipv[46] address/)
      }
    })

    it('refuses a port outside 0-65535, or with a sign, a leading zero or anything but digits', () => {
      for (const port of ['65536', '99999', '100000', '-1', '+1', '01', '00', '1.0', '0x10', '1e3', 'a', '\u0661']) {
        expectRefused(v1('TCP4', '192.0.2.1', '198.51.100.2', port, 443), /source port ".*" is not a port/)
        expectRefused(v1('TCP4', '192.0.2.1', '198.51.100.2', 443, port), /destination port ".*" is not a port/)
      }
    })
  })

  describe('v2', () => {
    it('decodes PROXY over IPv4, without and with TLVs (skipped)', () => {
      const fields = { family: 'IPv4', sourceAddress: '192.0.2.1', sourcePort: 56324, destinationAddress: '198.51.100.2', destinationPort: 443 } as const
      expectDecoded(v2(), fields)
      expectDecoded(v2({ tlvs: COMMON_TLVS }), fields)
      expectDecoded(v2({ addresses: ipv4Block('0.0.0.0', '255.255.255.255', 0, 65535) }), {
        family: 'IPv4', sourceAddress: '0.0.0.0', sourcePort: 0, destinationAddress: '255.255.255.255', destinationPort: 65535
      })
    })

    it('decodes PROXY over IPv6, without and with TLVs, writing addresses as Node does', () => {
      const addresses = ipv6Block('20010db8000000000000000000000001', '00000000000000000000ffffc0000201', 40000, 7000)
      const fields = { family: 'IPv6', sourceAddress: '2001:db8::1', sourcePort: 40000, destinationAddress: '::ffff:192.0.2.1', destinationPort: 7000 } as const
      expectDecoded(v2({ family: 0x21, addresses }), fields)
      expectDecoded(v2({ family: 0x21, addresses, tlvs: COMMON_TLVS }), fields)
      expectDecoded(v2({ family: 0x21, addresses: ipv6Block('f'.repeat(32), '0'.repeat(32), 1, 2) }), {
        family: 'IPv6', sourceAddress: FULL_IPV6, sourcePort: 1, destinationAddress: '::', destinationPort: 2
      })
    })

    it('decodes LOCAL (a health check by the proxy itself) without addresses, whatever its family', () => {
      expectDecoded(v2({ versionCommand: 0x20, family: 0x00, addresses: Buffer.alloc(0) }), { local: true })
      expectDecoded(v2({ versionCommand: 0x20, family: 0x11 }), { local: true })
      expectDecoded(v2({ versionCommand: 0x20, family: 0x21, addresses: Buffer.alloc(0), tlvs: COMMON_TLVS }), { local: true })
      // LOCAL's family is ignored, as the spec says: even UDP's.
      expectDecoded(v2({ versionCommand: 0x20, family: 0x12 }), { local: true })
    })

    it('decodes PROXY over UNSPEC and over a unix stream socket without addresses', () => {
      expectDecoded(v2({ family: 0x00, addresses: Buffer.alloc(0) }), {})
      expectDecoded(v2({ family: 0x00, tlvs: COMMON_TLVS }), {})
      expectDecoded(v2({ family: 0x31, addresses: Buffer.alloc(216, 0x61), tlvs: [tlv(0x01, 'h2')] }), {})
    })

    it('refuses a bad signature at its first wrong byte', () => {
      for (let i = 1; i < SIGNATURE.length; i++) {
        const header = v2()
        header[i] = header[i]! ^ 0x20
        expect(refusedAfter(header), `byte ${i}`).to.equal(i + 1)
        expectRefused(header, new RegExp(`byte ${i} is 0x[0-9a-f]{2}, where the proxy protocol v2 signature goes`))
      }
    })

    it('refuses a version other than 2', () => {
      for (const versionCommand of [0x01, 0x11, 0x31, 0xf1]) {
        expectRefused(v2({ versionCommand }), /says version \d+, not 2/)
        expect(refusedAfter(v2({ versionCommand }))).to.equal(16)
      }
    })

    it('refuses a command other than LOCAL and PROXY', () => {
      for (const versionCommand of [0x22, 0x2f]) expectRefused(v2({ versionCommand }), /command is \d+, neither LOCAL \(0\) nor PROXY \(1\)/)
    })

    it('refuses a family and protocol byte the spec does not define', () => {
      for (const family of [0x01, 0x10, 0x13, 0x23, 0x30, 0x41, 0xff]) {
        expectRefused(v2({ family }), /family and protocol byte is 0x[0-9a-f]{2}, which the spec does not define/)
        expectRefused(v2({ family, versionCommand: 0x20 }), /does not define/)
      }
    })

    it('refuses PROXY over UDP or a unix datagram socket: p2sn needs a stream', () => {
      expectRefused(v2({ family: 0x12 }), /forwards udp over ipv4; p2sn runs over a stream/)
      expectRefused(v2({ family: 0x22, addresses: Buffer.alloc(36) }), /forwards udp over ipv6/)
      expectRefused(v2({ family: 0x32, addresses: Buffer.alloc(216) }), /forwards a unix datagram socket/)
    })

    it('refuses a length too short for the family\'s addresses', () => {
      expectRefused(v2({ family: 0x11, addresses: IPV4_BLOCK.subarray(0, 11) }), /length 11 is too short for the addresses of tcp over ipv4 \(12 bytes\)/)
      expectRefused(v2({ family: 0x21, addresses: Buffer.alloc(35) }), /length 35 is too short .* tcp over ipv6 \(36 bytes\)/)
      expectRefused(v2({ family: 0x21, addresses: IPV4_BLOCK }), /length 12 is too short/)
      expectRefused(v2({ family: 0x31, addresses: Buffer.alloc(215) }), /length 215 is too short .* unix stream socket \(216 bytes\)/)
      expectRefused(v2({ family: 0x11, addresses: Buffer.alloc(0) }), /length 0 is too short/)
    })

    it('refuses a header longer than maxHeaderLength as soon as its length arrives, holding at most 16 bytes', () => {
      const longest = v2({ tlvs: [tlv(0x04, Buffer.alloc(DEFAULT_MAX_PROXY_HEADER_LENGTH - 16 - 12 - 3))] })
      expect(longest.length).to.equal(DEFAULT_MAX_PROXY_HEADER_LENGTH)
      expectDecoded(longest, { family: 'IPv4', sourceAddress: '192.0.2.1', sourcePort: 56324, destinationAddress: '198.51.100.2', destinationPort: 443 })
      for (const length of [DEFAULT_MAX_PROXY_HEADER_LENGTH - 16 + 1, 0xffff]) {
        // Only the fixed part is sent: the length field alone must be enough.
        const fixed = v2({ length }).subarray(0, 16)
        expectRefused(fixed, new RegExp(`is ${16 + length} bytes long, more than maxHeaderLength \\(552\\)`))
        expect(refusedAfter(fixed)).to.equal(16)
      }
      // LOCAL is held to it too.
      expectRefused(v2({ versionCommand: 0x20, length: 0xffff }).subarray(0, 16), /more than maxHeaderLength/)
    })

    it('counts TLVs without holding them: never more than 52 bytes held', () => {
      const header = v2({ family: 0x21, addresses: Buffer.alloc(36, 1), tlvs: [tlv(0x04, Buffer.alloc(400))] })
      const decoder = new ProxyHeaderDecoder()
      let most = 0
      let decoded: ProxyHeader | undefined
      for (const chunk of rechunk(header, 'byte')) {
        decoded = decoder.write(chunk)
        most = Math.max(most, decoder.bufferedLength)
      }
      expect(most).to.equal(V2_MAX_HELD)
      expect(decoded?.length).to.equal(header.length)
    })
  })

  describe('what is not a header', () => {
    it('refuses a plain P2SN client by its second byte', () => {
      const pubkey = 'P2SN:PUBKEY\x04'
      expect(refusedAfter(pubkey)).to.equal(2)
      expectRefused(pubkey, /does not start with a proxy protocol header: byte 1 is 0x32, where "PROXY " goes/)
    })

    it('refuses other protocols by their first byte', () => {
      const tlsHello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
      for (const start of [tlsHello, 'GET / HTTP/1.1\r\n', 'proxy TCP4', '\0', '\n']) {
        expect(refusedAfter(start)).to.equal(1)
        expectRefused(start, /byte 0 is 0x[0-9a-f]{2}, where "PROXY " or the proxy protocol v2 signature goes/)
      }
      // CR starts the v2 signature: the next byte decides.
      expect(refusedAfter('\r\r')).to.equal(2)
    })

    it('refuses a v1 prefix that goes wrong at its first wrong byte', () => {
      expect(refusedAfter('PROXy TCP4')).to.equal(5)
      expect(refusedAfter('PROXYTCP4 ')).to.equal(6)
      expectRefused('PROXYTCP4 ', /byte 5 is 0x54, where "PROXY " goes/)
    })

    it('refuses input that ends inside a header, but not input that never started', () => {
      expectRefused('PROXY TCP4 192.0.2.1', /ended 20 bytes into its proxy protocol v1 header/)
      expectRefused(SIGNATURE.subarray(0, 5), /ended 5 bytes into its proxy protocol v2 header/)
      const tlvs = v2({ tlvs: COMMON_TLVS })
      expectRefused(tlvs.subarray(0, tlvs.length - 1), new RegExp(`ended ${tlvs.length - 1} bytes into its proxy protocol v2 header`))
      expectRefused(v2().subarray(0, 20), /ended 20 bytes into/)
      const decoder = new ProxyHeaderDecoder()
      decoder.end()
      expect(decoder.failed).to.equal(false)
    })
  })

  describe('the stream after the header', () => {
    it('comes out as a view of the chunk that ended the header, not a copy', () => {
      for (const header of [Buffer.from(v1('TCP4', '192.0.2.1', '198.51.100.2', 1, 2)), v2({ tlvs: COMMON_TLVS })]) {
        const chunk = Buffer.concat([header, STREAM])
        const decoded = new ProxyHeaderDecoder().write(chunk)!
        expect(decoded.rest).to.deep.equal(STREAM)
        expect(decoded.rest.buffer).to.equal(chunk.buffer)
        expect(decoded.rest.byteOffset).to.equal(chunk.byteOffset + header.length)
        expect(decoded.length).to.equal(header.length)
      }
    })

    it('is empty when the header ends with the chunk', () => {
      const decoded = new ProxyHeaderDecoder().write(v2())!
      expect(decoded.rest.length).to.equal(0)
    })

    it('is not the decoder\'s: a write after the header is refused, and empty chunks are ignored before it', () => {
      const decoder = new ProxyHeaderDecoder()
      expect(decoder.write(Buffer.alloc(0))).to.equal(undefined)
      expect(decoder.write(Buffer.from('PROXY UNKNOWN\r'))).to.equal(undefined)
      expect(decoder.write(Buffer.alloc(0))).to.equal(undefined)
      expect(decoder.write(Buffer.from('\n'))?.version).to.equal(1)
      expectP2snErrorSync(() => decoder.write(STREAM), 'ERR_P2SN_INVALID_ARGUMENT')
      decoder.end()
    })
  })

  describe('maxHeaderLength', () => {
    it('raises or lowers the v2 limit', () => {
      const header = v2({ family: 0x21, addresses: Buffer.alloc(36), tlvs: [tlv(0x04, Buffer.alloc(1000))] })
      expectRefused(header, /more than maxHeaderLength \(552\)/)
      const raised = new ProxyHeaderDecoder({ maxHeaderLength: 2000 }).write(header)
      expect(raised?.length).to.equal(header.length)
      expect(raised?.sourceAddress).to.equal('::')
      expectRefused(v2({ tlvs: [tlv(0x04, Buffer.alloc(22))] }), /is 53 bytes long, more than maxHeaderLength \(52\)/, { maxHeaderLength: 52 })
      expect(new ProxyHeaderDecoder({ maxHeaderLength: 52 }).write(v2({ family: 0x21, addresses: Buffer.alloc(36) }))?.family).to.equal('IPv6')
    })

    it('is at least 52 and counts as 65551 above', () => {
      expect(new ProxyHeaderDecoder().maxHeaderLength).to.equal(552)
      expect(new ProxyHeaderDecoder({ maxHeaderLength: Infinity }).maxHeaderLength).to.equal(16 + 0xffff)
      expect(new ProxyHeaderDecoder({ maxHeaderLength: 1e9 }).maxHeaderLength).to.equal(16 + 0xffff)
      for (const maxHeaderLength of [51, 0, -1, 100.5, NaN, '600' as unknown as number]) {
        expectP2snErrorSync(() => new ProxyHeaderDecoder({ maxHeaderLength }), 'ERR_P2SN_INVALID_ARGUMENT')
      }
      const widest = v2({ length: 0xffff }).subarray(0, 16)
      expect(new ProxyHeaderDecoder({ maxHeaderLength: Infinity }).write(widest)).to.equal(undefined)
    })
  })

  describe('properties', () => {
    const ipv4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => Buffer.from(b))
    const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b))
    const port = fc.integer({ min: 0, max: 0xffff })
    const tlvs = fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 40 })), { maxLength: 6 })
      .map((list) => list.map(([type, value]) => tlv(type, Buffer.from(value))))
    const cuts = fc.array(fc.nat(), { maxLength: 12 })
    const after = fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b))

    /** 16 bytes as eight groups of hex, upper or lower case, as a v1 line may write them. */
    const longIPv6 = (bytes: Buffer, upper: boolean): string => {
      const text = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(2 * i).toString(16)).join(':')
      return upper ? text.toUpperCase() : text
    }

    /** Decodes `header` + `rest` cut at `cuts`, checking the bytes after it come back whole. */
    const decodeCut = (header: Buffer, rest: Buffer, cutList: number[]): Fields => {
      const bytes = Buffer.concat([header, rest])
      const { fields, after: got } = decode(bytes, cutList.map((c) => c % (bytes.length + 1)))
      expect(got).to.deep.equal(rest)
      expect(fields.length).to.equal(header.length)
      return fields
    }

    it('decodes v1 and v2 of the same IPv4 addresses alike, however cut (property)', () => {
      fc.assert(fc.property(ipv4, ipv4, port, port, tlvs, after, cuts, (source, destination, sourcePort, destinationPort, list, rest, cutList) => {
        const text = v1('TCP4', source.join('.'), destination.join('.'), sourcePort, destinationPort)
        const binary = v2({ addresses: Buffer.concat([source, destination, ports(sourcePort, destinationPort)]), tlvs: list })
        const expected = { family: 'IPv4', sourceAddress: source.join('.'), sourcePort, destinationAddress: destination.join('.'), destinationPort, local: false }
        expect(decodeCut(Buffer.from(text), rest, cutList)).to.include({ ...expected, version: 1 })
        expect(decodeCut(binary, rest, cutList)).to.include({ ...expected, version: 2 })
      }))
    })

    it('decodes v1 and v2 of the same IPv6 addresses alike, however cut (property)', () => {
      fc.assert(fc.property(ipv6, ipv6, port, port, fc.boolean(), tlvs, after, cuts, (source, destination, sourcePort, destinationPort, upper, list, rest, cutList) => {
        const text = v1('TCP6', longIPv6(source, upper), longIPv6(destination, upper), sourcePort, destinationPort)
        const binary = v2({ family: 0x21, addresses: Buffer.concat([source, destination, ports(sourcePort, destinationPort)]), tlvs: list })
        const fromText = decodeCut(Buffer.from(text), rest, cutList)
        const fromBinary = decodeCut(binary, rest, cutList)
        expect({ ...fromText, version: 2, length: 0 }).to.deep.equal({ ...fromBinary, length: 0 })
        // Short and lowercase, as Node writes addresses, and the same 16 bytes.
        expect(fromBinary.sourceAddress).to.match(/^[0-9a-f:.]+$/)
        expect(fromBinary.sourceAddress!.length).to.be.at.most(39)
        const again = decodeCut(Buffer.from(v1('TCP6', fromBinary.sourceAddress!, fromBinary.destinationAddress!, 1, 2)), rest, cutList)
        expect(again.sourceAddress).to.equal(fromBinary.sourceAddress)
      }))
    })

    it('refuses any other input with ERR_P2SN_PROXY_PROTOCOL alone, never holding more than the limit (property)', () => {
      const starts = fc.constantFrom(Buffer.alloc(0), Buffer.from('PROXY '), Buffer.from('PROXY TCP4 '), SIGNATURE, v2().subarray(0, 13), v2().subarray(0, 16))
      fc.assert(fc.property(starts, fc.uint8Array({ maxLength: 160 }), cuts, (start, tail, cutList) => {
        const bytes = Buffer.concat([start, Buffer.from(tail)])
        const decoder = new ProxyHeaderDecoder()
        for (const chunk of rechunk(bytes, cutList)) {
          const failure = attempt(() => decoder.write(chunk))
          if (failure !== undefined) {
            expect(failure).to.be.an.instanceof(P2snError)
            expect((failure as P2snError).code).to.equal('ERR_P2SN_PROXY_PROTOCOL')
            return
          }
          if (decoder.header !== undefined) return
          expect(decoder.bufferedLength).to.be.at.most(heldLimit(bytes))
        }
      }), { numRuns: 500 })
    })
  })
})
