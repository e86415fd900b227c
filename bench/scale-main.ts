/** `npm run bench:scale`: only the benchmarks of scale (issue 5). */
import { benchScale } from './scale.js'

await benchScale()
