// The short CI version of `npm run soak`: nothing lost, nothing out of order under load.
import { expect } from 'chai'
import { soak } from './helpers/soak.js'

describe('soak (short)', function () {
  this.timeout(60_000)

  for (const workers of [undefined, 2]) {
    it(`20 clients for 3 s, bursts of up to 5 messages of 0-1000 bytes, server ${workers === undefined ? 'inline' : 'with 2 workers'}: every reply right, in order`, async () => {
      const result = await soak({ clients: 20, seconds: 3, maxMessage: 1000, workers })
      expect(result.errors).to.deep.equal([])
      expect(result.mismatches).to.equal(0)
      expect(result.messages).to.be.above(100)
    })
  }
})
