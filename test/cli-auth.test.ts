// The command line's authenticated mode (issue 10): listen --auth and --allow, connect --auth,
// what --exec children are told, and the warning when they are told a claim.
import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { expect } from 'chai'
import { generateKeyPair, wrap, type KeyPair } from '../lib/index.js'
import { lines, makeHome, runCli, startListener, useCliRoot, CLI_TIMEOUT_MS } from './helpers/cli.js'
import { ScriptedPeer } from './helpers/frame-pair.js'
import { impersonate } from './helpers/impostor.js'
import { listenLocal } from './helpers/net.js'
import { until } from './helpers/timing.js'
import { acceptTlsAs, dial } from './helpers/tls.js'

const WARNING = /^p2sn: warning: without --auth, P2SN_PEER_FINGERPRINT is the key the client claims, not one it proved/

describe('p2sn command line, authenticated mode', function () {
  const root = useCliRoot(this, 'p2sn-cli-auth-')
  let serverKey: KeyPair
  let alice: KeyPair
  let mallory: KeyPair
  let aliceFile: string
  let malloryFile: string
  const sockets: net.Socket[] = []

  before(async () => {
    [serverKey, alice, mallory] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()])
    aliceFile = path.join(root(), 'alice.pem')
    malloryFile = path.join(root(), 'mallory.pem')
    await fs.writeFile(aliceFile, alice.privateKey.toPem(), { mode: 0o600 })
    await fs.writeFile(malloryFile, mallory.privateKey.toPem(), { mode: 0o600 })
  })

  afterEach(() => {
    for (const socket of sockets.splice(0)) socket.destroy()
  })

  const serverHome = async (): Promise<string> => await makeHome(root(), serverKey.privateKey.toPem())
  const home = async (): Promise<string> => await makeHome(root())

  /**
   * The impostor of the issue: it holds alice's public key only, and sends `command` once its
   * handshake claiming her key is through. Resolves with how that went: `'sent'`, or the reason
   * the listener refused it.
   */
  async function impostor (port: number, command: string, tlsKeys?: KeyPair): Promise<string> {
    const peer = new ScriptedPeer(await dial(port, sockets, tlsKeys))
    try {
      await impersonate(peer, alice.publicKey, command)
      return 'sent'
    } catch (err) {
      return (err as Error).message
    }
  }

  describe('usage', () => {
    it('--allow needs --auth, and a fingerprint', async () => {
      const without = await runCli(['listen', '0', '--allow', alice.publicKey.fingerprint, '--echo'], { home: root() })
      expect(without.code).to.equal(2)
      expect(without.stderr).to.match(/^p2sn listen: --allow needs --auth/)
      const bad = await runCli(['listen', '0', '--auth', '--allow', 'SHA256:nope', '--echo'], { home: root() })
      expect(bad.code).to.equal(2)
      expect(bad.stderr).to.include('bad --allow \'SHA256:nope\'')
    })

    it('listen --help and connect --help say what plain P2SN does not prove', async () => {
      for (const command of ['listen', 'connect']) {
        const help = (await runCli([command, '--help'], { home: root() })).stdout.toString()
        expect(help).to.include('authenticates nobody')
        expect(help).to.include('--auth')
      }
    })
  })

  describe('the impostor of issue 10 against --exec \'if [ "$P2SN_PEER_FINGERPRINT" = "$ALICE" ]; then sh; fi\'', () => {
    const gate = 'if [ "$P2SN_PEER_FINGERPRINT" = "$ALICE" ]; then sh; fi'

    it('plain P2SN: runs its command as alice (a known limit), and the listener warned that it would', async () => {
      const pwned = path.join(root(), 'pwned-plain')
      const listener = await startListener(['--keep-open', '--exec', gate], { home: await serverHome(), env: { ALICE: alice.publicKey.fingerprint } })
      expect(await impostor(listener.port, `id > ${pwned}`)).to.equal('sent')
      await until(async () => await exists(pwned), 10_000, `the impostor's command writing ${pwned}`)
      expect(lines(listener.cli.stderr).filter((line) => WARNING.test(line))).to.have.length(1)
    })

    it('--auth: fails, whether it claims alice\'s key over its own certificate or speaks plain P2SN; no shell runs', async () => {
      const pwned = path.join(root(), 'pwned-auth')
      const listener = await startListener(['--keep-open', '--auth', '--exec', gate], { home: await serverHome(), env: { ALICE: alice.publicKey.fingerprint } })
      expect(await impostor(listener.port, `id > ${pwned}`, mallory)).to.include('hung up')
      expect(await impostor(listener.port, `id > ${pwned}`)).to.include('hung up')
      await listener.cli.waitForStderr(/presented the p2sn key SHA256:\S+, but proved another key in tls/)
      await listener.cli.waitForStderr(/tls 1\.3 handshake with the client failed/)
      expect(await exists(pwned)).to.equal(false)
      expect(listener.cli.stderr).not.to.match(WARNING)
    })
  })

  describe('listen --auth --allow alice --exec', () => {
    it('admits alice, proven, and nobody else: not her public key, not a certificate of one\'s own, not a plain client', async () => {
      const ran = path.join(root(), 'ran')
      const listener = await startListener([
        '--keep-open', '--auth', '--allow', alice.publicKey.fingerprint,
        '--exec', `printf '%s %s\\n' "$P2SN_PEER_FINGERPRINT" "$P2SN_PEER_AUTHENTICATED" >> ${ran}; cat`
      ], { home: await serverHome() })
      const port = String(listener.port)

      const asAlice = await runCli(['connect', '127.0.0.1', port, '--auth', '--key', aliceFile], { home: await home(), input: 'hello\n' })
      expect(asAlice.code, asAlice.stderr).to.equal(0)
      expect(asAlice.stdout.toString()).to.equal('hello\n')

      expect(await impostor(listener.port, 'hello', mallory)).to.include('hung up')
      const ownCertificate = await runCli(['connect', '127.0.0.1', port, '--auth', '--key', malloryFile], { home: await home(), input: 'hello\n' })
      expect(ownCertificate.code).to.equal(1)
      expect(ownCertificate.stdout.length).to.equal(0)
      const plain = await runCli(['connect', '127.0.0.1', port, '--key', aliceFile], { home: await home(), input: 'hello\n' })
      // The server closed before sending a byte: "cannot connect" (exit 5, issue 13), with the reason.
      expect(plain.code).to.equal(5)
      expect(plain.stderr).to.include(`cannot connect to 127.0.0.1:${port} (the server closed the connection before sending a byte`)
      expect(plain.stderr).to.include('authenticated mode')

      await listener.cli.waitForStderr(/verifyPeer refused the peer SHA256:\S+: its key is not one given with --allow/)
      expect((await fs.readFile(ran, 'utf8'))).to.equal(`${alice.publicKey.fingerprint} 1\n`)
    })

    it('tells --exec children P2SN_PEER_AUTHENTICATED=0 without --auth', async () => {
      const listener = await startListener(['--exec', 'echo "$P2SN_PEER_AUTHENTICATED"'], { home: await serverHome() })
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--stream', '--key', aliceFile], { home: await home() })
      expect(client.code, client.stderr).to.equal(0)
      expect(client.stdout.toString()).to.equal('0\n')
    })
  })

  describe('connect --auth', () => {
    it('checks the proven key against known peers and --fingerprint, as in plain P2SN', async () => {
      const listener = await startListener(['--keep-open', '--auth', '--echo'], { home: await serverHome() })
      const port = String(listener.port)
      const clientHome = await home()
      const first = await runCli(['connect', '127.0.0.1', port, '--auth', '--key', aliceFile], { home: clientHome, input: 'one\n' })
      expect(first.code, first.stderr).to.equal(0)
      expect(first.stderr).to.include(`recorded 127.0.0.1:${port} ${serverKey.publicKey.fingerprint}`)
      const pinned = await runCli(['connect', '127.0.0.1', port, '--auth', '--key', aliceFile, '--fingerprint', serverKey.publicKey.fingerprint], { home: clientHome, input: 'two\n' })
      expect(pinned.code, pinned.stderr).to.equal(0)
      expect(pinned.stdout.toString()).to.equal('two\n')
      const wrong = await runCli(['connect', '127.0.0.1', port, '--auth', '--key', aliceFile, '--fingerprint', mallory.publicKey.fingerprint], { home: clientHome, input: 'three\n' })
      expect(wrong.code).to.equal(3)
    })

    it('exits 3 when the server proves one key in TLS and presents another', async () => {
      // A server that does TLS under mallory's key and P2SN under the real server's key.
      const impostor = net.createServer((socket) => {
        const tlsSocket = acceptTlsAs(socket, mallory)
        tlsSocket.on('error', () => {})
        wrap(tlsSocket, { role: 'server', keyPair: serverKey }).on('error', () => {})
      })
      const port = await listenLocal(impostor)
      try {
        const client = await runCli(['connect', '127.0.0.1', String(port), '--auth', '--key', aliceFile, '--no-verify'], { home: await home(), input: 'x\n' })
        expect(client.code, client.stderr).to.equal(3)
        expect(client.stderr).to.include('but proved another key in tls')
      } finally {
        await new Promise((resolve) => impostor.close(resolve))
      }
    })

    it('fails at once against a plain listener, with a clear line', async () => {
      const listener = await startListener(['--echo'], { home: await serverHome() })
      const started = Date.now()
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--auth', '--key', aliceFile], { home: await home(), input: 'x\n' })
      // The plain listener closed before sending a byte: "cannot connect" (exit 5, issue 13), with the reason.
      expect(client.code).to.equal(5)
      expect(Date.now() - started).to.be.below(CLI_TIMEOUT_MS / 2)
      expect(lines(client.stderr)).to.have.length(1)
      expect(client.stderr).to.include('does not run the authenticated mode')
    })

    it('warns about --exec without --auth, once, and not with it', async () => {
      const listener = await startListener(['--keep-open', '--echo'], { home: await serverHome() })
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--stream', '--exec', 'echo hi'], { home: await home() })
      expect(client.code, client.stderr).to.equal(0)
      expect(lines(client.stderr).filter((line) => line.startsWith('p2sn: warning:'))).to.have.length(1)
      expect(client.stderr).to.include('the key the server claims')
      const authenticated = await startListener(['--keep-open', '--auth', '--echo'], { home: await serverHome() })
      const quiet = await runCli(['connect', '127.0.0.1', String(authenticated.port), '--auth', '--stream', '--exec', 'echo hi'], { home: await home() })
      expect(quiet.code, quiet.stderr).to.equal(0)
      expect(quiet.stderr).not.to.include('warning')
    })
  })
})

async function exists (file: string): Promise<boolean> {
  return await fs.access(file).then(() => true, () => false)
}
