import { expect } from 'chai'
import { ERROR_CODES, FrameSplitter, P2snError, decodeBase64 } from '../lib/index.js'

describe('P2snError', () => {
  it('is an Error named P2snError', () => {
    const err = new P2snError('ERR_P2SN_TRUNCATED', 'the input ended inside a frame')
    expect(err).to.be.an.instanceof(Error)
    expect(err).to.be.an.instanceof(P2snError)
    expect(err.name).to.equal('P2snError')
    expect(String(err)).to.equal('P2snError: the input ended inside a frame')
    expect(err.stack).to.be.a('string').and.match(/^P2snError: the input ended inside a frame/)
  })

  it('carries its code and message', () => {
    const err = new P2snError('ERR_P2SN_BAD_KEY', 'the key is not rsa')
    expect(err.code).to.equal('ERR_P2SN_BAD_KEY')
    expect(err.message).to.equal('the key is not rsa')
  })

  it('passes cause through', () => {
    const cause = new TypeError('underlying')
    const err = new P2snError('ERR_P2SN_DECRYPT', 'decryption failed', { cause })
    expect(err.cause).to.equal(cause)
  })

  it('has no cause when none is given', () => {
    const err = new P2snError('ERR_P2SN_DECRYPT', 'decryption failed')
    expect(err.cause).to.equal(undefined)
    expect(Object.prototype.hasOwnProperty.call(err, 'cause')).to.equal(false)
  })

  it('is the error thrown by the library, with a listed code', () => {
    let thrown: unknown
    try {
      decodeBase64('QQ')
    } catch (err) {
      thrown = err
    }
    expect(thrown).to.be.an.instanceof(P2snError)
    expect(ERROR_CODES).to.include((thrown as P2snError).code)
    expect(() => new FrameSplitter({ maxFrameLength: -1 })).to.throw(P2snError)
  })
})

describe('ERROR_CODES', () => {
  it('is a non-empty list of ERR_P2SN_* strings', () => {
    expect(ERROR_CODES.length).to.be.greaterThan(0)
    for (const code of ERROR_CODES) expect(code).to.be.a('string').and.match(/^ERR_P2SN_[A-Z0-9]+(_[A-Z0-9]+)*$/)
  })

  it('has no duplicates', () => {
    expect(new Set(ERROR_CODES).size).to.equal(ERROR_CODES.length)
  })

  it('lists the codes the framing and Base64 layers use', () => {
    expect(ERROR_CODES).to.include.members(['ERR_P2SN_INVALID_ARGUMENT', 'ERR_P2SN_FRAME_TOO_LONG', 'ERR_P2SN_TRUNCATED', 'ERR_P2SN_BAD_BASE64'])
  })
})
