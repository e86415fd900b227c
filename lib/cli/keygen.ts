/**
 * `p2sn keygen`: writes a new private key and prints its fingerprint.
 * @module
 */
import { DEFAULT_KEY_BITS, generateKeyPair } from '../index.js'
import { expectPositionals, parseBits } from './args.js'
import type { Command } from './command.js'
import { stdout } from './endpoint.js'
import { EXIT } from './exit-codes.js'
import { ensureHome, identityPath } from './identity.js'
import { checkKeyTarget, writePrivateKeyFile } from './key-file.js'
import { note } from './log.js'

const usage = 'p2sn keygen [--bits 2048] [--out FILE] [--force]'

export const keygen: Command = {
  name: 'keygen',
  summary: 'write a new private key (PKCS#1 PEM, mode 0600) and print its fingerprint',
  usage,
  help: `Usage: ${usage}

Writes a new RSA private key as PKCS#1 PEM ("BEGIN RSA PRIVATE KEY", as the Python
reference writes it) with mode 0600, and prints its fingerprint on stdout. The key itself is
never printed. An existing file is not overwritten without --force.

Options:
  --bits N      modulus size in bits, 1024 to 16384 (default ${DEFAULT_KEY_BITS})
  --out FILE    where to write the key (default: the identity, ~/.p2sn/identity.pem,
                which listen and connect use when not given --key)
  --force       overwrite FILE if it exists (the key in it is lost)
  -h, --help    show this help

Example:
  p2sn keygen --out server.pem

Exit codes: 0 success, 1 failure at run time, 2 usage error, 3 peer key refused,
4 key file error (details in p2sn --help).
`,
  options: {
    bits: { type: 'string' },
    out: { type: 'string' },
    force: { type: 'boolean' }
  },
  async run (args) {
    expectPositionals(args, [])
    const bitsText = args.string('bits')
    const bits = bitsText === undefined ? DEFAULT_KEY_BITS : parseBits(bitsText)
    let file = args.string('out')
    if (file === undefined) {
      await ensureHome()
      file = identityPath()
    }
    await checkKeyTarget(file, args.flag('force'))
    const { privateKey, publicKey } = await generateKeyPair({ bits })
    await writePrivateKeyFile(file, privateKey.toPem(), args.flag('force'))
    note(`wrote a ${bits}-bit private key to ${file} (mode 0600)`)
    stdout().write(`${publicKey.fingerprint}\n`)
    return EXIT.ok
  }
}
