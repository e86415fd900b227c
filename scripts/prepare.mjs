// npm's `prepare`: builds dist/ in a clone (after `npm install`, and for a git dependency,
// which npm installs with its devDependencies). A folder dependency (`file:../p2sn`) on a
// fresh clone has no devDependencies, so no TypeScript: then it says what to run instead of
// failing with "tsc: not found". Tarballs never run this: `npm pack` strips `prepare` from the
// manifest it packs (scripts/pack-manifest.mjs), and they ship dist/ built.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
let tsc
try {
  tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc')
} catch {
  if (existsSync(join(root, 'dist', 'index.js'))) process.exit(0)
  console.error(`p2sn: ${root} has no dist/ yet and no TypeScript to build it with.\n` +
    `p2sn: run \`npm install && npm run build\` in ${root}, then install it again.`)
  process.exit(1)
}
const build = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' })
process.exit(build.status ?? 1)
