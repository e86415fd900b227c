// `npm pack` and `npm publish` pack package.json as it is on disk after `prepack`. `strip`
// (from prepack) takes out `prepare`, which builds a clone but would make npm warn every user of
// the tarball about install scripts; `restore` (from postpack) puts that one script back.
// Only the script is kept aside, never the whole file: after a pack that failed between the two
// (no postpack), the next restore still puts it back, and edits made meanwhile stay.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const manifest = join(root, 'package.json')
const saved = join(root, '.package.json.prepare')

const json = JSON.parse(readFileSync(manifest, 'utf8'))
const write = () => { writeFileSync(manifest, `${JSON.stringify(json, null, 2)}\n`) }

if (process.argv[2] === 'strip') {
  if (json.scripts?.prepare !== undefined) {
    writeFileSync(saved, json.scripts.prepare)
    delete json.scripts.prepare
    write()
  }
} else if (process.argv[2] === 'restore') {
  if (existsSync(saved)) {
    if (json.scripts?.prepare === undefined) {
      // Back in its place, after prepack, so that the file reads as it did.
      const prepare = readFileSync(saved, 'utf8')
      const scripts = {}
      for (const [name, command] of Object.entries(json.scripts ?? {})) {
        scripts[name] = command
        if (name === 'prepack') scripts.prepare = prepare
      }
      scripts.prepare ??= prepare
      json.scripts = scripts
      write()
    }
    rmSync(saved)
  }
} else {
  console.error('usage: node scripts/pack-manifest.mjs strip|restore')
  process.exit(2)
}
