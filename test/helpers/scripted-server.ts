/**
 * A scripted P2SN server for the scanner's tests: one small TCP server whose every step is a
 * setting, written by hand on node:crypto (raw RSA and our own unpadding to see what class a
 * ciphertext is, PKCS#1 v1.5 to answer), with no import of lib/, so that what the scanner is
 * judged against is not the library it ships with. {@link REFERENCE_SCRIPT} stands in for the
 * Python reference (issue 14: scripted servers stand in for it in tests), {@link CONFORMING_SCRIPT}
 * for a server that does everything the scanner checks for; a test changes one setting of either.
 * @module
 */
import crypto, { type KeyObject } from 'node:crypto'
import net from 'node:net'
import { listenLocal } from './net.js'

const PUBKEY = 'P2SN:PUBKEY'
const KEYCHECK = 'P2SN:KEYCHECK'
const ERRORKEY = 'P2SN:ERRORKEY'
const TERMINATOR = 0x04
/** What the Python reference takes in one `recv`. */
const REFERENCE_RECV = 64_000

/** A key pair of the scripted server, with what the script needs of it. */
export interface ScriptKey {
  privateKey: KeyObject
  publicKey: KeyObject
  /** Modulus length in bytes: the length of each ciphertext block. */
  k: number
  /** PKCS#1 PEM of the public key. */
  pem: string
}

/** A new RSA key of `bits` bits (as small as 512), exponent 65537. */
export async function makeScriptKey (bits: number): Promise<ScriptKey> {
  const privateKey = await new Promise<KeyObject>((resolve, reject) => {
    crypto.generateKeyPair('rsa', { modulusLength: bits, publicExponent: 0x10001 }, (err, _, key) => {
      if (err !== null) reject(err)
      else resolve(key)
    })
  })
  const publicKey = crypto.createPublicKey(privateKey)
  return { privateKey, publicKey, k: Math.ceil(bits / 8), pem: publicKey.export({ type: 'pkcs1', format: 'pem' }) as string }
}

/** How the server reads: frames up to a limit, as the Python reference does, forever, or not past a point. */
export type Reading =
  /** Drops (destroys) a connection whose frame grows past `maxFrame` bytes. */
  | { kind: 'limit', maxFrame: number }
  /** The reference: one read takes at most 64000 bytes and keeps what comes before a terminator, so 64000 bytes without one are a (bad) frame. */
  | { kind: 'recv-64000' }
  /** Reads an endless frame for ever, keeping none of it past 64 KiB, and never closes. */
  | { kind: 'forever' }
  /** Pauses the socket once a frame passes 64 KiB, and keeps the connection open. */
  | { kind: 'pause' }

/** What the server does at each step: one setting per behaviour the scanner tells apart. */
export interface Script {
  /** The server's key on its `n`th connection (from 0). */
  key: (connection: number) => ScriptKey
  /** Step 2: Base64 of the PEM, raw PEM, a line of text, nothing, a close, a 2 MiB frame, or bytes without end. */
  step2: 'base64' | 'pem' | 'garbage' | 'silence' | 'close' | 'overlong' | 'endless'
  /** Step 4: P2SN:PUBKEY, or another plain frame. */
  step4: 'pubkey' | 'other'
  /** Step 3: check the key check (P2SN:ERRORKEY and close when it is not P2SN:KEYCHECK to our key), or go on whatever it is. */
  keyCheck: 'verify' | 'accept-any'
  /** Step 6: P2SN:KEYCHECK to the client's key, a line of text, or another plaintext to the client's key. */
  step6: 'keycheck' | 'garbage' | 'other-plaintext'
  /** Smallest client key taken at step 5, in bits (P2SN:ERRORKEY and close below it); 0 takes any. */
  minClientBits: number
  /** Most RSA blocks in one message; more is a message that does not decrypt. */
  maxBlocks: number
  /** Each message that decrypts: a reply to the client's key, P2SN:ERRORKEY, a frame that does not decrypt, or a close. */
  request: 'reply' | 'errorkey' | 'undecryptable' | 'close'
  /**
   * A message that does not decrypt: answered as if it did (implicit rejection), P2SN:ERRORKEY
   * and close (the reference's oracle), P2SN:ERRORKEY encrypted like a reply (an oracle by
   * content), or answered as if it did and closed 400 ms later (an oracle by a late close).
   */
  badPadding: 'as-valid' | 'errorkey-close' | 'encrypted-error' | 'late-close'
  /** Sends an encrypted greeting right after step 6, before any request. Default false. */
  greeting?: boolean
  /** Extra wait before answering a message that does not decrypt, in ms: an oracle by timing. */
  badPaddingDelay: number
  /** Closes a connection that has sent nothing this many ms after it came; undefined: never. */
  silentTimeout: number | undefined
  reading: Reading
}

/**
 * The Python reference as the scanner sees it: raw PEM at step 2; P2SN:ERRORKEY then close for
 * a bad key check, a bad client key or any message that does not decrypt (padding included), a
 * reply to the others; any client key; one block per message; no timeouts; 64000 bytes a read.
 */
export const REFERENCE_SCRIPT: Omit<Script, 'key'> = {
  step2: 'pem',
  step4: 'pubkey',
  keyCheck: 'verify',
  step6: 'keycheck',
  minClientBits: 0,
  maxBlocks: 1,
  request: 'reply',
  badPadding: 'errorkey-close',
  badPaddingDelay: 0,
  silentTimeout: undefined,
  reading: { kind: 'recv-64000' }
}

/**
 * A server that passes every check: Base64 PEM, ERRORKEY for a bad key check, no client key
 * under 1024 bits, several blocks a message, the same kind of reply whatever the padding, a
 * close for a connection silent its first 300 ms, a drop for a frame over 16 KiB.
 */
export const CONFORMING_SCRIPT: Omit<Script, 'key'> = {
  step2: 'base64',
  step4: 'pubkey',
  keyCheck: 'verify',
  step6: 'keycheck',
  minClientBits: 1024,
  maxBlocks: 32,
  request: 'reply',
  badPadding: 'as-valid',
  badPaddingDelay: 0,
  silentTimeout: 300,
  reading: { kind: 'limit', maxFrame: 16 * 1024 }
}

/** What one connection did, for the tests to check. */
export interface ConnectionRecord {
  /** Order of arrival, from 0. */
  index: number
  key: ScriptKey
  bytesReceived: number
  /** Longest frame (or run of bytes with no terminator) received, in bytes. */
  longestFrame: number
  bytesSent: number
}

/** A running scripted server. */
export interface ScriptedServer {
  port: number
  connections: ConnectionRecord[]
  /** Failures of the script itself (a bug of the test, not of the scanner). */
  errors: Error[]
  /** Destroys every connection and closes the server. */
  close: () => Promise<void>
}

/** Starts a server on 127.0.0.1 that plays `script` on each connection. */
export async function startScriptedServer (script: Script): Promise<ScriptedServer> {
  const sockets = new Set<net.Socket>()
  const connections: ConnectionRecord[] = []
  const errors: Error[] = []
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    const record: ConnectionRecord = { index: connections.length, key: script.key(connections.length), bytesReceived: 0, longestFrame: 0, bytesSent: 0 }
    connections.push(record)
    playScript(socket, script, record, errors)
  })
  const port = await listenLocal(server)
  return {
    port,
    connections,
    errors,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
    }
  }
}

function playScript (socket: net.Socket, script: Script, record: ConnectionRecord, errors: Error[]): void {
  const key = record.key
  let stage: 'step1' | 'keycheck' | 'clientkey' | 'messages' = 'step1'
  let clientKey: KeyObject | undefined
  let ended = false
  // Bytes of the frame not yet terminated: kept up to KEEP, counted past it
  const KEEP = 64 * 1024
  let pending: Buffer[] = []
  let pendingLength = 0
  let kept = 0
  let queue = Promise.resolve()

  socket.on('error', () => {})
  const silentTimer = script.silentTimeout === undefined
    ? undefined
    : setTimeout(() => { if (record.bytesReceived === 0) end() }, script.silentTimeout)
  socket.on('close', () => { clearTimeout(silentTimer) })

  function write (bytes: Buffer | string): void {
    if (ended || !socket.writable) return
    const buffer = Buffer.from(bytes)
    record.bytesSent += buffer.length
    socket.write(buffer)
  }
  function send (frame: Buffer | string): void {
    write(Buffer.concat([Buffer.from(frame), Buffer.from([TERMINATOR])]))
  }
  /** A graceful close after the frames written so far, as the reference's `close()`. */
  function end (): void {
    if (ended) return
    ended = true
    clearTimeout(silentTimer)
    socket.end()
  }
  function sealedFrame (publicKey: KeyObject, plaintext: Buffer | string): Buffer {
    return Buffer.from(crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_PKCS1_PADDING }, Buffer.from(plaintext)).toString('base64'))
  }

  /** The plaintext of a Base64 frame of blocks to our key, or undefined when any of it is bad. */
  function open (frame: Buffer): Buffer | undefined {
    const text = frame.toString('latin1')
    const ciphertext = Buffer.from(text, 'base64')
    if (ciphertext.toString('base64') !== text) return undefined
    if (ciphertext.length === 0 || ciphertext.length % key.k !== 0 || ciphertext.length / key.k > script.maxBlocks) return undefined
    const parts: Buffer[] = []
    for (let at = 0; at < ciphertext.length; at += key.k) {
      let em: Buffer
      try {
        em = crypto.privateDecrypt({ key: key.privateKey, padding: crypto.constants.RSA_NO_PADDING }, ciphertext.subarray(at, at + key.k))
      } catch {
        return undefined
      }
      const separator = em.indexOf(0, 2)
      if (em[0] !== 0 || em[1] !== 2 || separator < 10) return undefined
      parts.push(em.subarray(separator + 1))
    }
    return Buffer.concat(parts)
  }

  function step2 (): void {
    switch (script.step2) {
      case 'base64': send(Buffer.from(key.pem).toString('base64')); break
      case 'pem': send(key.pem); break
      case 'garbage': send('hello, this is no key'); break
      case 'silence': break
      case 'close': end(); break
      case 'overlong': write(Buffer.concat([Buffer.alloc(2 * 1024 * 1024, 0x41), Buffer.from([TERMINATOR])])); break
      case 'endless': {
        const chunk = Buffer.alloc(64 * 1024, 0x41)
        const pump = (): void => {
          while (!ended && socket.writable) {
            record.bytesSent += chunk.length
            if (!socket.write(chunk)) {
              socket.once('drain', pump)
              return
            }
          }
        }
        pump()
        break
      }
    }
  }

  async function onFrame (frame: Buffer): Promise<void> {
    if (ended) return
    switch (stage) {
      case 'step1':
        // The reference takes anything else as a message, which does not decrypt.
        if (frame.toString('latin1') !== PUBKEY) return refuse()
        stage = 'keycheck'
        return step2()
      case 'keycheck': {
        const plaintext = open(frame)
        if (script.keyCheck === 'verify' && plaintext?.toString('latin1') !== KEYCHECK) return refuse()
        stage = 'clientkey'
        return send(script.step4 === 'pubkey' ? PUBKEY : 'P2SN:READY')
      }
      case 'clientkey': {
        const text = frame.toString('latin1')
        const pem = Buffer.from(text, 'base64')
        try {
          if (pem.toString('base64') !== text) throw new Error('not base64')
          clientKey = crypto.createPublicKey({ key: pem, format: 'pem' })
        } catch {
          return refuse()
        }
        if ((clientKey.asymmetricKeyDetails?.modulusLength ?? 0) < script.minClientBits) return refuse()
        stage = 'messages'
        if (script.step6 === 'keycheck') {
          send(sealedFrame(clientKey, KEYCHECK))
          if (script.greeting === true) setTimeout(() => { send(sealedFrame(clientKey!, 'welcome')) }, 5)
          return
        }
        if (script.step6 === 'garbage') return send('not a key check')
        return send(sealedFrame(clientKey, 'P2SN:HELLO'))
      }
      case 'messages': {
        let plaintext = open(frame)
        if (plaintext === undefined) {
          if (script.badPaddingDelay > 0) await new Promise((resolve) => setTimeout(resolve, script.badPaddingDelay))
          if (script.badPadding === 'errorkey-close') return refuse()
          if (script.badPadding === 'encrypted-error') return send(sealedFrame(clientKey!, ERRORKEY))
          if (script.badPadding === 'late-close') setTimeout(end, 400)
          // Implicit rejection: a plaintext of its own, of a length drawn from the ciphertext (as
          // the real one is), answered like any other. A length the same for every bad ciphertext
          // would tell them from good ones: an oracle by content, which the scanner reports.
          const digest = crypto.createHash('sha256').update(frame).digest()
          plaintext = crypto.randomBytes(digest.readUInt16BE(0) % 200)
        }
        return answer(plaintext)
      }
    }
  }

  function refuse (): void {
    send(ERRORKEY)
    end()
  }

  function answer (plaintext: Buffer): void {
    switch (script.request) {
      case 'reply': return send(sealedFrame(clientKey!, `got ${plaintext.length} bytes`))
      case 'errorkey': return send(ERRORKEY)
      case 'undecryptable': {
        // A block of the client key's length whose padding is bad: 00 01, never 00 02.
        const k = Math.ceil((clientKey!.asymmetricKeyDetails?.modulusLength ?? 0) / 8)
        const em = Buffer.alloc(k, 0xff)
        em[0] = 0
        em[1] = 1
        return send(crypto.publicEncrypt({ key: clientKey!, padding: crypto.constants.RSA_NO_PADDING }, em).toString('base64'))
      }
      case 'close': return end()
    }
  }

  function handle (frame: Buffer): void {
    queue = queue.then(async () => await onFrame(frame)).catch((err: Error) => {
      errors.push(err)
      socket.destroy()
    })
  }

  function take (bytes: Buffer): void {
    pendingLength += bytes.length
    record.longestFrame = Math.max(record.longestFrame, pendingLength)
    if (kept < KEEP) {
      const part = bytes.subarray(0, KEEP - kept)
      pending.push(part)
      kept += part.length
    }
  }
  function cut (): Buffer {
    const frame = Buffer.concat(pending)
    pending = []
    pendingLength = 0
    kept = 0
    return frame
  }

  socket.on('data', (chunk: Buffer) => {
    record.bytesReceived += chunk.length
    if (ended) return
    let rest = chunk
    while (rest.length > 0 && !ended) {
      const at = rest.indexOf(TERMINATOR)
      const before = at === -1 ? rest : rest.subarray(0, at)
      const reading = script.reading
      if (reading.kind === 'recv-64000' && pendingLength + before.length >= REFERENCE_RECV) {
        // One read's worth and no terminator in it: the reference takes it as a frame.
        const room = REFERENCE_RECV - pendingLength
        take(before.subarray(0, room))
        handle(cut())
        rest = rest.subarray(room)
        continue
      }
      take(before)
      if (reading.kind === 'limit' && pendingLength > reading.maxFrame) {
        // Dropped as a real server drops a hostile peer: no answer, a reset if it still sends.
        ended = true
        socket.destroy()
        return
      }
      if (at === -1) {
        if (reading.kind === 'pause' && pendingLength > KEEP) socket.pause()
        return
      }
      handle(cut())
      rest = rest.subarray(at + 1)
    }
  })
}
