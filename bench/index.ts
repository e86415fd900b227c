/**
 * `npm run bench`: every benchmark, each printed as a ratio against a baseline measured in the
 * same run. Not a test: nothing here fails on a slow machine.
 */
import { benchRoundTrip } from './round-trip.js'
import { benchScale } from './scale.js'
import { benchStreamChain } from './stream-chain.js'

await benchStreamChain()
console.log()
await benchRoundTrip()
console.log()
await benchScale()
