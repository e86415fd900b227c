// `npm pack` and `npm publish` pack package.json as it is on disk after `prepack`. `strip`
// (from prepack) takes out `prepare`, which builds a clone but would make npm warn every user of
// the tarball about install scripts; `restore` (from postpack) puts the file back as it was.
import { readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const manifest = join(root, 'package.json')
const saved = join(root, '.package.json.unpacked')

if (process.argv[2] === 'strip') {
  const text = readFileSync(manifest, 'utf8')
  if (!existsSync(saved)) writeFileSync(saved, text)
  const json = JSON.parse(text)
  delete json.scripts.prepare
  writeFileSync(manifest, `${JSON.stringify(json, null, 2)}\n`)
} else if (process.argv[2] === 'restore') {
  if (existsSync(saved)) renameSync(saved, manifest)
} else {
  console.error('usage: node scripts/pack-manifest.mjs strip|restore')
  process.exit(2)
}
