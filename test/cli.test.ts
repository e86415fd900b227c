import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { expect } from 'chai'
import { createServer, generateKeyPair, type KeyPair } from '../lib/index.js'
import {
  CLI_COMMAND, cliBatchTimeout, lines, makeHome, runCli, sha256, startCli, startListener, startShell, unusedPort, useCliRoot,
  type CliResult
} from './helpers/cli.js'
import { listenLocal } from './helpers/net.js'

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/

/** One line on stderr starting with "p2sn", no stack trace, nothing on stdout. */
function expectOneErrorLine (result: CliResult, exitCode: number): void {
  const where = `stderr: ${JSON.stringify(result.stderr)}`
  expect(result.code, where).to.equal(exitCode)
  expect(lines(result.stderr), where).to.have.length(1)
  expect(result.stderr, where).to.match(/^p2sn[ :]/)
  expect(result.stderr, where).to.match(/\n$/)
  expect(result.stderr, where).not.to.match(/\n\s+at /)
  expect(result.stdout.length, 'stdout').to.equal(0)
}

describe('p2sn command line', function () {
  const root = useCliRoot(this, 'p2sn-cli-')
  let serverKey: KeyPair
  let otherServerKey: KeyPair
  let clientKey: KeyPair

  before(async () => {
    [serverKey, otherServerKey, clientKey] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()])
  })

  const serverHome = async (key = serverKey): Promise<string> => await makeHome(root(), key.privateKey.toPem())
  const clientHome = async (): Promise<string> => await makeHome(root(), clientKey.privateKey.toPem())

  describe('help', () => {
    it('p2sn --help lists the commands, the files and the exit codes', async () => {
      const result = await runCli(['--help'], { home: root() })
      expect(result.code).to.equal(0)
      const text = result.stdout.toString()
      for (const name of ['keygen', 'fingerprint', 'listen', 'connect', 'P2SN_HOME', 'known_peers', 'Exit codes']) expect(text).to.include(name)
      for (const code of ['0  success', '1  failure', '2  usage', '3  peer key refused', '4  key file', '5  cannot connect']) expect(text).to.include(code)
      expect(result.stderr).to.equal('')
    })

    it('every command has --help, which wins over other mistakes', async () => {
      const runs = [
        ['keygen', '--help'], ['fingerprint', '-h'], ['listen', '--help'], ['connect', '--help', '--frob'], ['help', 'connect']
      ]
      const results = await Promise.all(runs.map(async (args) => await runCli(args, { home: root() })))
      for (const [i, result] of results.entries()) {
        const name = runs[i]![0] === 'help' ? runs[i]![1] : runs[i]![0]
        expect(result.code, runs[i]!.join(' ')).to.equal(0)
        expect(result.stdout.toString()).to.match(new RegExp(`^Usage: p2sn ${name!}`))
        expect(result.stderr).to.equal('')
      }
      expect(results[3]!.stdout.toString()).to.include('Lines and bytes')
    })
  })

  describe('bad input: one line on stderr, a non-zero exit, never a stack trace', () => {
    // Each case: arguments (given the temp root), expected exit code.
    const cases: Array<[string, (dir: string) => string[], number]> = [
      ['no command', () => [], 2],
      ['an unknown command', () => ['frobnicate'], 2],
      ['an option before the command', () => ['--frob'], 2],
      ['an unknown flag of connect', () => ['connect', '127.0.0.1', '7000', '--frob'], 2],
      ['an unknown flag of listen', () => ['listen', '7000', '--frob'], 2],
      ['connect without HOST', () => ['connect'], 2],
      ['connect without PORT', () => ['connect', '127.0.0.1'], 2],
      ['listen without PORT', () => ['listen'], 2],
      ['a port that is not a number', () => ['listen', 'http'], 2],
      ['a negative port', () => ['listen', '-1'], 2],
      ['port 0 to connect to', () => ['connect', 'localhost', '0'], 2],
      ['a port above 65535', () => ['connect', 'localhost', '65536'], 2],
      ['an extra argument', () => ['connect', 'localhost', '7000', 'extra'], 2],
      ['fingerprint without FILE', () => ['fingerprint'], 2],
      ['fingerprint of a missing file', (dir) => ['fingerprint', path.join(dir, 'missing.pem')], 4],
      ['fingerprint of a file that holds no key', (dir) => ['fingerprint', path.join(dir, 'garbage.pem')], 4],
      ['fingerprint of a directory', (dir) => ['fingerprint', dir], 4],
      ['keygen --bits 100', () => ['keygen', '--bits', '100'], 2],
      ['keygen --bits many', () => ['keygen', '--bits', 'many'], 2],
      ['keygen --bits without a value', () => ['keygen', '--bits'], 2],
      ['listen --workers 0', () => ['listen', '0', '--echo', '--workers', '0'], 2],
      ['listen --workers many', () => ['listen', '0', '--echo', '--workers', 'many'], 2],
      ['a value given to a flag', () => ['keygen', '--force=yes'], 2],
      ['keygen into a missing directory', (dir) => ['keygen', '--bits', '1024', '--out', path.join(dir, 'no', 'such', 'key.pem')], 4],
      ['a missing --key file', (dir) => ['connect', '127.0.0.1', '7000', '--key', path.join(dir, 'missing.pem')], 4],
      ['an unreadable --key file', (dir) => ['connect', '127.0.0.1', '7000', '--key', path.join(dir, 'truncated.pem')], 4],
      ['a public key as --key', (dir) => ['listen', '0', '--key', path.join(dir, 'public.pem')], 4],
      ['a malformed --fingerprint', () => ['connect', '127.0.0.1', '7000', '--fingerprint', 'SHA256:abc'], 2],
      ['--no-verify with --accept-new', () => ['connect', '127.0.0.1', '7000', '--no-verify', '--accept-new'], 2],
      ['--echo with --exec', () => ['listen', '0', '--echo', '--exec', 'cat'], 2],
      ['listen --stdio without --echo or --exec', () => ['listen', '--stdio'], 2],
      ['listen --stdio with a PORT', () => ['listen', '7000', '--stdio', '--echo'], 2],
      ['connect --stdio without --exec', () => ['connect', '--stdio'], 2]
    ]
    let dir: string
    let home: string
    let privatePem: string
    const results = new Map<string, Promise<CliResult>>()

    before(async function () {
      this.timeout(cliBatchTimeout(cases.length))
      dir = await fs.mkdtemp(path.join(root(), 'bad-'))
      home = await makeHome(root())
      privatePem = clientKey.privateKey.toPem()
      await fs.writeFile(path.join(dir, 'garbage.pem'), 'not a key\n')
      // Half a real private key: its lines must never show up in an error.
      await fs.writeFile(path.join(dir, 'truncated.pem'), privatePem.split('\n').slice(0, 6).join('\n') + '\n')
      await fs.writeFile(path.join(dir, 'public.pem'), clientKey.publicKey.toPem())
      // Ask for them all at once (runCli runs a few at a time); each test below checks one.
      for (const [name, args] of cases) results.set(name, runCli(args(dir), { home }))
      await Promise.allSettled(results.values())
    })

    for (const [name, , exitCode] of cases) {
      it(`${name}: exit ${exitCode}`, async () => {
        const result = await results.get(name)!
        expectOneErrorLine(result, exitCode)
        for (const line of privatePem.split('\n').slice(1, 6)) expect(result.stderr).not.to.include(line)
      })
    }

    it('a corrupt identity: exit 4, naming the file', async () => {
      const corrupt = await makeHome(root(), 'garbage\n')
      const result = await runCli(['listen', '0'], { home: corrupt })
      expectOneErrorLine(result, 4)
      expect(result.stderr).to.include(path.join(corrupt, 'identity.pem'))
    })

    it('nothing listening: exit 5, "cannot connect"', async () => {
      const port = await unusedPort()
      const result = await runCli(['connect', '127.0.0.1', String(port)], { home: await clientHome() })
      expectOneErrorLine(result, 5)
      expect(result.stderr).to.include(`cannot connect to 127.0.0.1:${port} (connection refused`)
    })
  })

  describe('keygen and fingerprint', () => {
    it('keygen writes a PKCS#1 key with mode 0600 and prints the fingerprint that fingerprint repeats', async () => {
      const home = await makeHome(root())
      const file = path.join(home, 'server.pem')
      const made = await runCli(['keygen', '--bits', '1024', '--out', file], { home })
      expect(made.code, made.stderr).to.equal(0)
      const printed = made.stdout.toString().trim()
      expect(printed).to.match(FINGERPRINT)
      const pem = await fs.readFile(file, 'utf8')
      expect(pem).to.match(/^-----BEGIN RSA PRIVATE KEY-----\n/)
      expect((await fs.stat(file)).mode & 0o777).to.equal(0o600)
      // The key itself is never printed.
      expect(made.stdout.toString() + made.stderr).not.to.include('PRIVATE KEY')

      const publicFile = path.join(home, 'server.pub')
      await fs.writeFile(publicFile, crypto.createPublicKey(pem).export({ type: 'spki', format: 'pem' }))
      const [ofPrivate, ofPublic, ofStdin] = await Promise.all([
        runCli(['fingerprint', file], { home }),
        runCli(['fingerprint', publicFile], { home }),
        runCli(['fingerprint', '-'], { home, input: pem })
      ])
      for (const result of [ofPrivate, ofPublic, ofStdin]) {
        expect(result.code, result.stderr).to.equal(0)
        expect(result.stdout.toString()).to.equal(`${printed}\n`)
        expect(result.stdout.toString()).not.to.include('PRIVATE')
      }
    })

    it('keygen refuses to overwrite without --force (exit 4), and replaces with it', async () => {
      const home = await makeHome(root())
      const file = path.join(home, 'key.pem')
      const first = await runCli(['keygen', '--bits', '1024', '--out', file], { home })
      expect(first.code).to.equal(0)
      const before = await fs.readFile(file, 'utf8')

      const refused = await runCli(['keygen', '--bits', '1024', '--out', file], { home })
      expectOneErrorLine(refused, 4)
      expect(refused.stderr).to.include('--force')
      expect(await fs.readFile(file, 'utf8')).to.equal(before)

      const forced = await runCli(['keygen', '--bits', '1024', '--out', file, '--force'], { home })
      expect(forced.code, forced.stderr).to.equal(0)
      expect(forced.stdout.toString()).not.to.equal(first.stdout.toString())
      expect(await fs.readFile(file, 'utf8')).not.to.equal(before)
      expect((await fs.stat(file)).mode & 0o777).to.equal(0o600)
    })

    it('keygen without --out makes the identity in P2SN_HOME, which listen then uses', async () => {
      const home = path.join(root(), 'fresh-home')
      const made = await runCli(['keygen', '--bits', '1024'], { home })
      expect(made.code, made.stderr).to.equal(0)
      expect((await fs.stat(home)).mode & 0o777).to.equal(0o700)
      expect((await fs.stat(path.join(home, 'identity.pem'))).mode & 0o777).to.equal(0o600)
      const listener = await startListener(['--echo'], { home })
      expect(listener.fingerprint).to.equal(made.stdout.toString().trim())
    })

    it('two commands starting at once on a new P2SN_HOME agree on one identity', async () => {
      const home = path.join(root(), 'raced-home')
      const [a, b] = await Promise.all([startListener(['--echo'], { home }), startListener(['--echo'], { home })])
      expect(a.fingerprint).to.equal(b.fingerprint)
      const made = await runCli(['fingerprint', path.join(home, 'identity.pem')], { home })
      expect(made.stdout.toString()).to.equal(`${a.fingerprint}\n`)
    })
  })

  describe('listen and connect over loopback', () => {
    it('lines, request and reply, with --echo; --trace names each frame; the identity is made once', async () => {
      const listener = await startListener(['--echo'], { home: await serverHome() })
      const home = await makeHome(root())
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--trace'], { home, input: 'hello\nworld\n\r\nlast line without newline' })
      expect(client.code, client.stderr).to.equal(0)
      expect(client.stdout.toString()).to.equal('hello\nworld\n\nlast line without newline\n')

      const trace = lines(client.stderr).filter((line) => line.startsWith('p2sn trace:'))
      const steps = trace.map((line) => /^p2sn trace: (->|<-) (.+?) +(\d+) bytes/.exec(line)?.slice(1, 3).join(' '))
      expect(steps.slice(0, 6)).to.deep.equal(['-> PUBKEY', '<- server key', '-> KEYCHECK', '<- PUBKEY', '-> client key', '<- KEYCHECK'])
      expect(steps.slice(6)).to.deep.equal(Array(8).fill(0).map((_, i) => i % 2 === 0 ? '-> message' : '<- message'))
      expect(trace[0]).to.match(/ 11 bytes$/)
      expect(trace[1]).to.match(/bytes \(base64 PEM\)$/)

      // listen serves one connection, then exits 0.
      expect((await listener.cli.result()).code).to.equal(0)

      // The client's identity was made on this first use, mode 0600, and is used again.
      const identity = path.join(home, 'identity.pem')
      expect((await fs.stat(identity)).mode & 0o777).to.equal(0o600)
      const created = /created a new identity (SHA256:\S+)/.exec(client.stderr)?.[1]
      expect(created).to.match(FINGERPRINT)
      expect(listener.cli.stderr).to.include(`connected with key ${created!}`)
      const again = await startListener(['--echo'], { home: await serverHome() })
      const second = await runCli(['connect', '127.0.0.1', String(again.port), '--no-verify'], { home, input: 'x\n' })
      expect(second.code, second.stderr).to.equal(0)
      expect(second.stderr).not.to.include('created')
      expect(again.cli.stderr).to.include(`connected with key ${created!}`)
    })

    it('listen --keep-open --echo --workers 2: clients at once are answered, each in order', async () => {
      const listener = await startListener(['--echo', '--keep-open', '--workers', '2'], { home: await serverHome() })
      const home = await makeHome(root())
      const inputs = Array.from({ length: 4 }, (_, c) => Array.from({ length: 30 }, (_, i) => `client ${c} line ${i}`).join('\n') + '\n')
      const clients = await Promise.all(inputs.map(async (input) => runCli(['connect', '127.0.0.1', String(listener.port), '--no-verify'], { home, input })))
      clients.forEach((client, c) => {
        expect(client.code, client.stderr).to.equal(0)
        expect(client.stdout.toString()).to.equal(inputs[c])
      })
      expect(listener.cli.child.exitCode).to.equal(null)
    })

    it('--stream with listen relaying its own stdin and stdout, both ways', async () => {
      const listener = await startListener([], { home: await serverHome() })
      listener.cli.send('from the server\nsecond\n')
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--stream'], { home: await clientHome(), input: 'from the client\n' })
      expect(client.code, client.stderr).to.equal(0)
      expect(client.stdout.toString()).to.equal('from the server\nsecond\n')
      const server = await listener.cli.result()
      expect(server.code, server.stderr).to.equal(0)
      expect(server.stdout.toString()).to.equal('from the client\n')
    })

    it('a message with newlines in it is printed as one line', async () => {
      // The server sends one raw message with newlines inside; the client prints it in line mode.
      const listener = await startListener(['--raw', '--exec', 'printf \'one\\ntwo\\r\\nthree\\n\''], { home: await serverHome() })
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--stream'], { home: await clientHome() })
      expect(client.code, client.stderr).to.equal(0)
      expect(client.stdout.toString()).to.equal('one two  three\n')
    })

    it('--raw carries binary data unchanged, request and reply against --echo, with --progress', async () => {
      const data = crypto.randomBytes(300 * 1024 + 17)
      const listener = await startListener(['--echo'], { home: await serverHome() })
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--raw', '--progress'], { home: await clientHome(), input: data })
      expect(client.code, client.stderr).to.equal(0)
      expect(client.stdout.length).to.equal(data.length)
      expect(sha256(client.stdout)).to.equal(sha256(data))
      expect(client.stderr).to.match(/p2sn: sent 300\.0 KiB, received 300\.0 KiB in /)
    })

    it('--raw --stream into listen --raw: the checksums are equal', async () => {
      const data = crypto.randomBytes(400 * 1024 + 3)
      const listener = await startListener(['--raw'], { home: await serverHome() })
      listener.cli.send('')
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--raw', '--stream'], { home: await clientHome(), input: data })
      expect(client.code, client.stderr).to.equal(0)
      const server = await listener.cli.result()
      expect(server.code, server.stderr).to.equal(0)
      expect(sha256(server.stdout)).to.equal(sha256(data))
    })

    it('--raw --stream from listen --raw into a slow reader: nothing is lost when the server ends first', async () => {
      const data = crypto.randomBytes(512 * 1024 + 5)
      const listener = await startListener(['--raw'], { home: await serverHome() })
      listener.cli.send(data)
      const client = startCli(['connect', '127.0.0.1', String(listener.port), '--raw', '--stream'], { home: await clientHome() })
      // Read nothing for a while: the client's stdout fills, it pauses the channel, and the
      // server has sent everything and ended meanwhile.
      client.child.stdout!.pause()
      client.send('')
      setTimeout(() => client.child.stdout!.resume(), 1500)
      const result = await client.result()
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stdout.length).to.equal(data.length)
      expect(sha256(result.stdout)).to.equal(sha256(data))
      expect((await listener.cli.result()).code).to.equal(0)
    })

    it('--pem-server-key sends the server key as raw PEM, which connect reads too', async () => {
      const listener = await startListener(['--echo', '--pem-server-key'], { home: await serverHome() })
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--trace'], { home: await clientHome(), input: 'x\n' })
      expect(client.code, client.stderr).to.equal(0)
      expect(client.stdout.toString()).to.equal('x\n')
      expect(client.stderr).to.match(/<- server key +\d+ bytes \(raw PEM\)\n/)
      expect(client.stderr).to.match(/-> client key +\d+ bytes \(base64 PEM\)\n/)
    })

    it('--exec runs a real child per connection, wired to the channel, told who the peer is', async () => {
      const listener = await startListener(['--exec', 'echo "$P2SN_PEER_FINGERPRINT"; tr a-z A-Z'], { home: await serverHome() })
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--stream'], { home: await clientHome(), input: 'hello\nworld\n' })
      expect(client.code, client.stderr).to.equal(0)
      expect(client.stdout.toString()).to.equal(`${clientKey.publicKey.fingerprint}\nHELLO\nWORLD\n`)
      expect((await listener.cli.result()).code).to.equal(0)
    })

    it('a line over 512 KiB: exit 1, one line that points to --raw', async () => {
      const listener = await startListener(['--echo'], { home: await serverHome() })
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--no-verify'], { home: await clientHome(), input: 'x'.repeat(600 * 1024) + '\n' })
      expectOneErrorLine(client, 1)
      expect(client.stderr).to.include('--raw')
    })

    it('a request the server\'s handler fails on (P2SN:UNEXPECTEDERROR): one line, the other replies, exit 1', async () => {
      const server = createServer({
        keyPair: serverKey,
        handler: (message) => {
          if (message.toString() === 'boom') throw new Error('the handler failed')
          return message.toString().toUpperCase()
        }
      })
      const port = await listenLocal(server)
      try {
        const client = await runCli(['connect', '127.0.0.1', String(port), '--no-verify'], { home: await clientHome(), input: 'a\nboom\nb\n' })
        expect(client.code, client.stderr).to.equal(1)
        expect(client.stdout.toString()).to.equal('A\nB\n')
        expect(lines(client.stderr)).to.deep.equal(['p2sn: the server\'s handler failed on line 2 (it answered P2SN:UNEXPECTEDERROR)'])
      } finally {
        await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
      }
    })

    it('--keep-open relaying stdio: stdin goes to every client, every client\'s lines to stdout', async () => {
      const listener = await startListener(['--keep-open'], { home: await serverHome() })
      const home = await clientHome()
      const clients = ['a', 'b'].map((name) => {
        const client = startCli(['connect', '127.0.0.1', String(listener.port), '--stream'], { home })
        client.child.stdin!.write(`from ${name}\n`)
        return client
      })
      await listener.cli.waitForStderr(/connected with key[^]*connected with key/)
      listener.cli.send('to all\n')
      await listener.cli.waitForStdout(/from a\n[^]*from b\n|from b\n[^]*from a\n/)
      for (const client of clients) client.send('')
      const results = await Promise.all(clients.map(async (client) => await client.result()))
      for (const result of results) {
        expect(result.code, result.stderr).to.equal(0)
        expect(result.stdout.toString()).to.equal('to all\n')
      }
      expect(lines(listener.cli.stdout.toString()).sort()).to.deep.equal(['from a', 'from b'])
      expect(listener.cli.child.exitCode).to.equal(null)
    })

    it('--keep-open serves one client after another', async () => {
      const listener = await startListener(['--echo', '--keep-open'], { home: await serverHome() })
      const home = await clientHome()
      for (const word of ['first', 'second']) {
        const client = await runCli(['connect', '127.0.0.1', String(listener.port)], { home, input: `${word}\n` })
        expect(client.code, client.stderr).to.equal(0)
        expect(client.stdout.toString()).to.equal(`${word}\n`)
      }
      expect(listener.cli.child.exitCode).to.equal(null)
    })
  })

  describe('--stdio', () => {
    it('both ends joined by pipes: each one\'s stdout into the other\'s stdin', async () => {
      const server = startCli(['listen', '--stdio', '--exec', 'tr a-z A-Z'], { home: await serverHome() })
      const client = startCli(['connect', '--stdio', '--stream', '--fingerprint', serverKey.publicKey.fingerprint,
        '--exec', 'printf \'hello\\nworld\\n\'; exec >&-; cat >&2'], { home: await clientHome() })
      server.child.stdout!.pipe(client.child.stdin!)
      client.child.stdout!.pipe(server.child.stdin!)
      const [serverResult, clientResult] = await Promise.all([server.result(), client.result()])
      expect(serverResult.code, serverResult.stderr).to.equal(0)
      expect(clientResult.code, clientResult.stderr).to.equal(0)
      // The client's child wrote the replies to its stderr, which is the client's.
      expect(clientResult.stderr).to.include('HELLO\nWORLD\n')
      expect(serverResult.stderr).to.include(`connected with key ${clientKey.publicKey.fingerprint}`)
    })

    it('through a shell pipeline and a fifo, request and reply against --echo', async () => {
      const dir = await fs.mkdtemp(path.join(root(), 'fifo-'))
      const p2sn = CLI_COMMAND.map((word) => `'${word}'`).join(' ')
      const script = `mkfifo "$DIR/f" && P2SN_HOME="$SERVER" ${p2sn} listen --stdio --echo -q < "$DIR/f" | ` +
        `P2SN_HOME="$CLIENT" ${p2sn} connect --stdio -q --exec 'printf "ping\\npong\\n"; exec >&-; cat > "$DIR/replies"' > "$DIR/f"`
      // Each command in the script sets its own P2SN_HOME.
      const shell = startShell(script, { home: dir, env: { DIR: dir, SERVER: await serverHome(), CLIENT: await clientHome() } })
      const result = await shell.send('').result()
      expect(result.code, result.stderr).to.equal(0)
      expect(await fs.readFile(path.join(dir, 'replies'), 'utf8')).to.equal('ping\npong\n')
    })
  })

  describe('known peers', () => {
    it('records the first key, accepts it again, refuses a changed one, and --fingerprint, --no-verify, --accept-new', async () => {
      const home = await clientHome()
      const knownPeers = path.join(home, 'known_peers')
      const first = await startListener(['--echo', '--keep-open'], { home: await serverHome() })
      const target = `127.0.0.1:${first.port}`
      const connect = async (...flags: string[]): Promise<CliResult> =>
        await runCli(['connect', '127.0.0.1', String(first.port), ...flags], { home, input: 'hi\n' })

      const recorded = await connect()
      expect(recorded.code, recorded.stderr).to.equal(0)
      expect(recorded.stdout.toString()).to.equal('hi\n')
      expect(recorded.stderr).to.include(`recorded ${target} ${serverKey.publicKey.fingerprint}`)
      expect(await fs.readFile(knownPeers, 'utf8')).to.equal(`${target} ${serverKey.publicKey.fingerprint}\n`)

      const accepted = await connect()
      expect(accepted.code, accepted.stderr).to.equal(0)
      expect(accepted.stderr).to.equal('')

      // Another key on the same host and port.
      first.cli.child.kill('SIGKILL')
      await first.cli.done
      const changed = await startListener(['--echo', '--keep-open'], { home: await serverHome(otherServerKey), port: first.port })
      const oldKey = serverKey.publicKey.fingerprint
      const newKey = otherServerKey.publicKey.fingerprint

      const refused = await connect()
      expectOneErrorLine(refused, 3)
      expect(refused.stderr).to.include(oldKey).and.to.include(newKey).and.to.include('--accept-new')
      expect(await fs.readFile(knownPeers, 'utf8')).to.equal(`${target} ${oldKey}\n`)

      const wrongPin = await connect('--fingerprint', oldKey)
      expectOneErrorLine(wrongPin, 3)
      expect(wrongPin.stderr).to.include(oldKey).and.to.include(newKey)

      const unverified = await connect('--no-verify')
      expect(unverified.code, unverified.stderr).to.equal(0)
      expect(unverified.stdout.toString()).to.equal('hi\n')
      expect(await fs.readFile(knownPeers, 'utf8')).to.equal(`${target} ${oldKey}\n`)

      const pinned = await connect('--fingerprint', newKey)
      expect(pinned.code, pinned.stderr).to.equal(0)
      expect(await fs.readFile(knownPeers, 'utf8')).to.equal(`${target} ${newKey}\n`)

      // Back to the first key: refused again, then taken with --accept-new.
      changed.cli.child.kill('SIGKILL')
      await changed.cli.done
      await startListener(['--echo', '--keep-open'], { home: await serverHome(), port: first.port })
      expectOneErrorLine(await connect(), 3)
      // --accept-new adds a line for the key, and keeps the other (key rotation, issue 13).
      const acceptNew = await connect('--accept-new')
      expect(acceptNew.code, acceptNew.stderr).to.equal(0)
      expect(acceptNew.stderr).to.include(`added a key of ${target}`).and.to.include(`${oldKey}, besides ${newKey}`)
      expect(await fs.readFile(knownPeers, 'utf8')).to.equal(`${target} ${newKey}\n${target} ${oldKey}\n`)
    })
  })
})
