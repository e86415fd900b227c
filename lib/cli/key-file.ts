/**
 * Key files: read (with a size cap, so that `/dev/zero` is no key) and written as PKCS#1 PEM,
 * mode 0600, atomically and never over an existing file unless told to.
 * @module
 */
import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { P2snError, parsePrivateKey, parsePublicKey, type KeyPair, type PublicKey } from '../index.js'
import { CliError, errorMessage, systemErrorCode, systemReason } from './cli-error.js'
import { EXIT } from './exit-codes.js'

/** Longest key file read: the PEM of a 16384-bit private key is under 13 KB. */
const MAX_KEY_FILE = 64 * 1024

/** Reads a private key file (PKCS#1 or unencrypted PKCS#8 PEM). Failures exit with code 4. */
export async function readPrivateKeyFile (file: string): Promise<KeyPair> {
  const text = await readKeyText(file)
  try {
    return parsePrivateKey(text)
  } catch (err) {
    throw new CliError(`cannot use ${file} as a private key: ${errorMessage(err)}`, EXIT.keyFile, { cause: err })
  }
}

/** Reads a public key, or a private key's public half, from a PEM file (`-` for stdin). */
export async function readPublicKeyFile (file: string): Promise<PublicKey> {
  const text = await readKeyText(file)
  try {
    return parsePublicKey(text)
  } catch (err) {
    const why = err instanceof P2snError && err.code === 'ERR_P2SN_BAD_KEY'
      ? 'it holds no rsa key in pem (expected a private key, pkcs#1 or pkcs#8, or a public key, pkcs#1 or spki)'
      : errorMessage(err)
    throw new CliError(`cannot read a key from ${file}: ${why}`, EXIT.keyFile, { cause: err })
  }
}

/**
 * Writes `pem` to `file` with mode 0600: first to a temporary file beside it, then moved into
 * place, so that no one ever reads half a key. Without `force`, an existing file is left alone
 * and the call fails with exit code 4.
 */
export async function writePrivateKeyFile (file: string, pem: string, force: boolean): Promise<void> {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`)
  try {
    await fs.writeFile(temporary, pem, { mode: 0o600, flag: 'wx' })
    await fs.chmod(temporary, 0o600)
    if (force) await fs.rename(temporary, file)
    else await fs.link(temporary, file)
  } catch (err) {
    if (systemErrorCode(err) === 'EEXIST') throw alreadyExists(file, { cause: err })
    throw new CliError(`cannot write ${file}: ${systemReason(err)}`, EXIT.keyFile, { cause: err })
  } finally {
    await fs.rm(temporary, { force: true })
  }
}

/**
 * Fails early, before a key is generated, when {@link writePrivateKeyFile} would: `file`
 * exists and `force` is not set, or its directory does not exist.
 */
export async function checkKeyTarget (file: string, force: boolean): Promise<void> {
  if (!force) {
    const exists = await fs.lstat(file).then(() => true, () => false)
    if (exists) throw alreadyExists(file)
  }
  try {
    const directory = await fs.stat(path.dirname(file))
    if (!directory.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' })
  } catch (err) {
    throw new CliError(`cannot write ${file}: ${systemReason(err)}`, EXIT.keyFile, { cause: err })
  }
}

async function readKeyText (file: string): Promise<string> {
  let bytes: Buffer
  try {
    bytes = file === '-' ? await readStdin() : await readCapped(file)
  } catch (err) {
    if (err instanceof CliError) throw err
    throw new CliError(`cannot read ${file}: ${systemReason(err)}`, EXIT.keyFile, { cause: err })
  }
  return bytes.toString('latin1')
}

async function readCapped (file: string): Promise<Buffer> {
  const handle = await fs.open(file, 'r')
  try {
    const buffer = Buffer.alloc(MAX_KEY_FILE + 1)
    let length = 0
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length)
      if (bytesRead === 0) break
      length += bytesRead
    }
    if (length > MAX_KEY_FILE) throw tooLong(file)
    return buffer.subarray(0, length)
  } finally {
    await handle.close()
  }
}

async function readStdin (): Promise<Buffer> {
  const chunks: Buffer[] = []
  let length = 0
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer)
    length += (chunk as Buffer).length
    if (length > MAX_KEY_FILE) throw tooLong('stdin')
  }
  return Buffer.concat(chunks)
}

function tooLong (file: string): CliError {
  return new CliError(`${file} is larger than ${MAX_KEY_FILE / 1024} KiB, too large for a key file`, EXIT.keyFile)
}

function alreadyExists (file: string, options?: { cause?: unknown }): CliError {
  return new CliError(`${file} already exists; pass --force to overwrite it (the key in it is then lost)`, EXIT.keyFile, options)
}
