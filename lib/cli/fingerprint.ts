/**
 * `p2sn fingerprint FILE`: prints a key file's fingerprint.
 * @module
 */
import { expectPositionals } from './args.js'
import type { Command } from './command.js'
import { stdout } from './endpoint.js'
import { EXIT } from './exit-codes.js'
import { readPublicKeyFile } from './key-file.js'

const usage = 'p2sn fingerprint FILE'

export const fingerprint: Command = {
  name: 'fingerprint',
  summary: 'print the fingerprint of a private or public key file',
  usage,
  help: `Usage: ${usage}

Prints the fingerprint of the RSA key in FILE: SHA256: and the unpadded Base64 of SHA-256
over the PKCS#1 public key, as ssh prints fingerprints. FILE is a private key (PKCS#1 or
PKCS#8 PEM) or a public key (PKCS#1 or SPKI PEM); - reads it from stdin. This is what
listen prints on start, what connect records in ~/.p2sn/known_peers, and what
connect --fingerprint takes.

Options:
  -h, --help    show this help

Example:
  p2sn fingerprint ~/.p2sn/identity.pem

Exit codes: 0 success, 1 failure at run time, 2 usage error, 3 peer key refused,
4 key file error (details in p2sn --help).
`,
  options: {},
  async run (args) {
    const [file] = expectPositionals(args, ['FILE'])
    const publicKey = await readPublicKeyFile(file!)
    stdout().write(`${publicKey.fingerprint}\n`)
    return EXIT.ok
  }
}
