// The package imported as ESM: the names of the README's API are there, with the right kinds.
import * as p2sn from 'p2sn'
import { P2snError, ERROR_CODES } from 'p2sn'

const functions = ['connect', 'createServer', 'generateKeyPair', 'wrap', 'frameDuplex', 'joinDuplex',
  'parsePrivateKey', 'parsePublicKey', 'toPem', 'fingerprint', 'encodeBase64', 'decodeBase64',
  'encryptMessage', 'decryptMessage', 'selfSignedCertificate']
const classes = ['HandshakeDuplex', 'RsaCipher', 'Base64Codec', 'FrameSplitter', 'FrameJoiner', 'P2snError',
  'Channel', 'Server', 'RsaPool', 'PublicKey', 'PrivateKey']
const missing = [...functions, ...classes].filter((name) => typeof p2sn[name] !== 'function')
if (missing.length > 0) throw new Error(`missing or not functions: ${missing.join(', ')}`)
if (p2sn.FRAME_TERMINATOR !== 0x04) throw new Error(`FRAME_TERMINATOR is ${p2sn.FRAME_TERMINATOR}`)
if (!(new P2snError('ERR_P2SN_CLOSED', 'closed') instanceof Error)) throw new Error('P2snError is not an Error')
if (!Array.isArray(ERROR_CODES) || !ERROR_CODES.includes('ERR_P2SN_CLOSED')) throw new Error('ERROR_CODES is not the list of codes')
console.log(`esm import ok: ${Object.keys(p2sn).length} exports`)
