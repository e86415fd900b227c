/**
 * The p2sn home (`~/.p2sn`, or `$P2SN_HOME`) and the identity kept there: a private key made
 * on first use and reused by every later `listen` and `connect` without `--key`.
 * @module
 */
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { generateKeyPair, type KeyPair } from '../index.js'
import { CliError, errorMessage, systemErrorCode, systemReason } from './cli-error.js'
import { EXIT } from './exit-codes.js'
import { readPrivateKeyFile, writePrivateKeyFile } from './key-file.js'
import { note } from './log.js'

/** File name of the identity inside the p2sn home. */
const IDENTITY_FILE = 'identity.pem'
/** File name of the known peers inside the p2sn home. */
const KNOWN_PEERS_FILE = 'known_peers'

/** The p2sn home: `$P2SN_HOME` when set and not empty, else `~/.p2sn`. */
function p2snHome (): string {
  const fromEnv = process.env.P2SN_HOME
  return fromEnv !== undefined && fromEnv !== '' ? path.resolve(fromEnv) : path.join(os.homedir(), '.p2sn')
}

/** Path of the identity file. */
export function identityPath (): string {
  return path.join(p2snHome(), IDENTITY_FILE)
}

/** Path of the known peers file. */
export function knownPeersPath (): string {
  return path.join(p2snHome(), KNOWN_PEERS_FILE)
}

/** Creates the p2sn home, mode 0700, when it does not exist yet. */
export async function ensureHome (): Promise<string> {
  const home = p2snHome()
  try {
    await fs.mkdir(home, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new CliError(`cannot create ${home}: ${systemReason(err)}`, EXIT.keyFile, { cause: err })
  }
  return home
}

/**
 * The key to use: the `--key` file when given, else the identity, created (2048 bits) the
 * first time. Two processes starting at once agree on one identity: the file appears whole,
 * and only once.
 */
export async function loadKeyPair (keyFile: string | undefined): Promise<KeyPair> {
  if (keyFile !== undefined) return await readPrivateKeyFile(keyFile)
  const file = identityPath()
  try {
    return await readPrivateKeyFile(file)
  } catch (err) {
    if (systemErrorCode(err) !== 'ENOENT') throw identityError(file, err)
  }
  await ensureHome()
  const keyPair = await generateKeyPair()
  try {
    await writePrivateKeyFile(file, keyPair.privateKey.toPem(), false)
  } catch (err) {
    // Another p2sn made it first: use that one.
    if (systemErrorCode(err) === 'EEXIST') return await readPrivateKeyFile(file)
    throw err
  }
  note(`created a new identity ${keyPair.publicKey.fingerprint} in ${file}`)
  return keyPair
}

function identityError (file: string, err: unknown): CliError {
  return new CliError(`${errorMessage(err)}; fix or delete the identity ${file}, or pass --key FILE`, EXIT.keyFile, { cause: err })
}
