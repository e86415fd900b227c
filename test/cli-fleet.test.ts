/**
 * `p2sn listen` and `p2sn connect` for a fleet (issue 13): drain on SIGTERM and SIGINT, the
 * server's limits as flags, a log line per connection, "cannot connect", and key rotation.
 */
import { spawnSync } from 'node:child_process'
import type { EventEmitter } from 'node:events'
import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { expect } from 'chai'
import { FRAME_TERMINATOR, KEYWORD_PUBKEY, generateKeyPair, joinDuplex, wrap, type Channel, type KeyPair } from '../lib/index.js'
import { cliBatchTimeout, lines, makeHome, runCli, startCli, startListener, useCliRoot, type CliChild, type CliResult } from './helpers/cli.js'

/** Resolves when `socket` closes, or rejects after `ms`. */
async function closedWithin (socket: net.Socket, ms: number): Promise<number> {
  const started = Date.now()
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`the socket was still open after ${ms} ms`)) }, ms)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve(Date.now() - started)
    })
  })
}

/** A connected socket to 127.0.0.1:`port`, its errors ignored; `allowHalfOpen`: it does not end when the server does. */
async function rawConnect (port: number, allowHalfOpen = false): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen })
  socket.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return socket
}

/** A short pause. */
async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** Resolves with the arguments of `emitter`'s next `event`, or rejects after `ms`. */
async function nextEvent (emitter: EventEmitter, event: string, ms: number): Promise<unknown[]> {
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener)
      reject(new Error(`no '${event}' within ${ms} ms`))
    }, ms)
    const listener = (...args: unknown[]): void => {
      clearTimeout(timer)
      resolve(args)
    }
    emitter.once(event, listener)
  })
}

/** Resolves once `condition()` holds (checked every 20 ms), or rejects after `ms`, saying `what`. */
async function until (condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(20)
  }
}

/** The messages that `channel` receives, as text, in order; its errors are ignored. */
function receivedBy (channel: Channel): string[] {
  const messages: string[] = []
  channel.on('data', (message: Buffer) => { messages.push(message.toString()) })
  channel.on('error', () => {})
  return messages
}

/** One line on stderr starting with "p2sn", no stack trace. */
function expectOneErrorLine (result: CliResult, exitCode: number): void {
  const where = `stderr: ${JSON.stringify(result.stderr)}`
  expect(result.code, where).to.equal(exitCode)
  expect(lines(result.stderr), where).to.have.length(1)
  expect(result.stderr, where).to.match(/^p2sn[ :]/)
  expect(result.stderr, where).not.to.match(/\n\s+at /)
}

const ISO = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/

describe('p2sn command line for a fleet', function () {
  const root = useCliRoot(this, 'p2sn-cli-fleet-')
  let serverKey: KeyPair
  let newServerKey: KeyPair
  let clientKey: KeyPair

  before(async () => {
    [serverKey, newServerKey, clientKey] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()])
  })

  const serverHome = async (key = serverKey): Promise<string> => await makeHome(root(), key.privateKey.toPem())
  const clientHome = async (): Promise<string> => await makeHome(root(), clientKey.privateKey.toPem())

  describe('usage', () => {
    const cases: Array<[string, string[]]> = [
      ['--max-connections 0', ['listen', '0', '--echo', '--max-connections', '0']],
      ['--max-connections many', ['listen', '0', '--echo', '--max-connections', 'many']],
      ['--idle-timeout -5', ['listen', '0', '--echo', '--idle-timeout=-5']],
      ['--handshake-timeout 1.5', ['listen', '0', '--echo', '--handshake-timeout', '1.5']],
      ['--drain-timeout huge', ['listen', '0', '--echo', '--drain-timeout', '99999999999']],
      ['--keepalive 0', ['listen', '0', '--echo', '--keepalive', '0']],
      ['--log-format xml', ['listen', '0', '--echo', '--log-format', 'xml']],
      ['--proxy-protocol with --stdio', ['listen', '--stdio', '--echo', '--proxy-protocol']],
      ['--max-connections with --stdio', ['listen', '--stdio', '--echo', '--max-connections', '3']],
      ['connect --keepalive soon', ['connect', '127.0.0.1', '7000', '--keepalive', 'soon']],
      ['connect --keepalive with --stdio', ['connect', '--stdio', '--exec', 'cat', '--keepalive', '1000']],
      ['two --fingerprint, one malformed', ['connect', '127.0.0.1', '7000', '--fingerprint', 'SHA256:' + 'A'.repeat(43), '--fingerprint', 'SHA256:x']]
    ]
    it('a bad value of each new flag, or one that does not go with another: exit 2, one line', async function () {
      this.timeout(cliBatchTimeout(cases.length))
      const home = await clientHome()
      const results = await Promise.all(cases.map(async ([, args]) => await runCli(args, { home })))
      for (const [i, result] of results.entries()) {
        expectOneErrorLine(result, 2)
        expect(result.stderr, cases[i]![0]).to.match(/\(see p2sn (listen|connect) --help\)\n$/)
      }
    })

    it('--help documents every new flag, the log format, the drain and exit code 5', async () => {
      const [listenHelp, connectHelp, mainHelp] = await Promise.all([
        runCli(['listen', '--help'], { home: root() }), runCli(['connect', '--help'], { home: root() }), runCli(['--help'], { home: root() })
      ])
      for (const flag of ['--max-connections', '--idle-timeout', '--handshake-timeout', '--drain-timeout', '--proxy-protocol', '--keepalive', '--log-format', 'SIGTERM']) {
        expect(listenHelp.stdout.toString()).to.include(flag)
      }
      expect(connectHelp.stdout.toString()).to.include('--keepalive').and.to.include('cannot connect')
      expect(mainHelp.stdout.toString()).to.include('5  cannot connect')
    })
  })

  describe('the flags reach the server', () => {
    it('--max-connections 1: a second client reads "cannot connect" (exit 5), and the listener logs the refusal', async () => {
      const listener = await startListener(['--echo', '--keep-open', '--max-connections', '1'], { home: await serverHome() })
      const home = await clientHome()
      const first = startCli(['connect', '127.0.0.1', String(listener.port), '--no-verify', '--stream'], { home })
      await listener.cli.waitForStderr(/connected with key/)
      const second = await runCli(['connect', '127.0.0.1', String(listener.port), '--no-verify'], { home, input: 'x\n' })
      expectOneErrorLine(second, 5)
      expect(second.stderr).to.include(`cannot connect to 127.0.0.1:${listener.port} (the server closed the connection before sending a byte`)
      await listener.cli.waitForStderr(/127\.0\.0\.1:\d+ refused: 1 connections are open \(--max-connections\) \(ERR_P2SN_SERVER_BUSY\)/)
      // The first one is still served.
      first.send('still here\n')
      const result = await first.result()
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stdout.toString()).to.equal('still here\n')
    })

    it('--handshake-timeout closes a silent connection, and logs it', async () => {
      const listener = await startListener(['--echo', '--keep-open', '--handshake-timeout', '300'], { home: await serverHome() })
      const socket = await rawConnect(listener.port)
      const took = await closedWithin(socket, 5000)
      expect(took).to.be.below(4000)
      await listener.cli.waitForStderr(/closed after [\d.]+ s, 0 messages in, 0 out: handshake failed: .*\(ERR_P2SN_HANDSHAKE_TIMEOUT\)/)
    })

    it('--idle-timeout closes a channel where no message went either way', async () => {
      const listener = await startListener(['--echo', '--keep-open', '--idle-timeout', '400'], { home: await serverHome() })
      const client = startCli(['connect', '127.0.0.1', String(listener.port), '--no-verify', '--stream'], { home: await clientHome() })
      client.child.stdin!.write('one\n')
      await client.waitForStdout(/one\n/)
      // Nothing more is sent: the server closes the channel.
      await listener.cli.waitForStderr(/closed after [\d.]+ s, 1 message in, 1 out: .*\(ERR_P2SN_IDLE_TIMEOUT\)/, 10_000)
      client.send('')
      await client.result()
    })

    it('--keepalive on both sides does not disturb a session', async () => {
      const listener = await startListener(['--echo', '--keepalive', '1000'], { home: await serverHome() })
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--keepalive', '1000'], { home: await clientHome(), input: 'ok\n' })
      expect(client.code, client.stderr).to.equal(0)
      expect(client.stdout.toString()).to.equal('ok\n')
      expect((await listener.cli.result()).code).to.equal(0)
    })

    it('--proxy-protocol: the log and --exec see the address of the PROXY header; a connection without one is refused', async () => {
      const listener = await startListener(['--keep-open', '--proxy-protocol', '--exec', 'echo "$P2SN_PEER"'], { home: await serverHome() })
      const socket = await rawConnect(listener.port)
      socket.write('PROXY TCP4 203.0.113.7 10.0.0.1 5555 7000\r\n')
      const channel = wrap(socket, { role: 'client', keyPair: clientKey })
      const replies: string[] = []
      channel.on('data', (message: Buffer) => { replies.push(message.toString()) })
      channel.on('error', () => {})
      channel.end()
      await new Promise((resolve) => channel.once('close', resolve))
      expect(replies).to.deep.equal(['203.0.113.7:5555'])
      await listener.cli.waitForStderr(/203\.0\.113\.7:5555 connected with key/)
      await listener.cli.waitForStderr(/203\.0\.113\.7:5555 closed after/)

      const plain = await runCli(['connect', '127.0.0.1', String(listener.port), '--no-verify'], { home: await clientHome(), input: 'x\n' })
      expect(plain.code).to.equal(5)
      await listener.cli.waitForStderr(/no valid proxy protocol header/)
    })

    it('--proxy-protocol with --auth: TLS runs from the bytes after the header; --exec sees the header\'s address, authenticated', async () => {
      const listener = await startListener(['--keep-open', '--auth', '--proxy-protocol', '--exec', 'echo "$P2SN_PEER $P2SN_PEER_AUTHENTICATED"'], { home: await serverHome() })
      const socket = await rawConnect(listener.port)
      socket.write('PROXY TCP4 203.0.113.7 10.0.0.1 5555 7000\r\n')
      const channel = wrap(socket, { role: 'client', keyPair: clientKey, authenticate: true })
      const replies: string[] = []
      channel.on('data', (message: Buffer) => { replies.push(message.toString()) })
      channel.on('error', () => {})
      channel.end()
      await new Promise((resolve) => channel.once('close', resolve))
      expect(replies).to.deep.equal(['203.0.113.7:5555 1'])
      await listener.cli.waitForStderr(/203\.0\.113\.7:5555 connected with key/)
    })
  })

  describe('drain on SIGTERM and SIGINT', () => {
    // A child that says when it has read a request, then takes its time to answer.
    const slow = 'while read -r line; do echo "got $line" >&2; sleep 1; echo "$line" | tr a-z A-Z; done'

    it('a request in flight in a slow --exec gets its reply, then the listener exits 0', async () => {
      const listener = await startListener(['--keep-open', '--exec', slow], { home: await serverHome() })
      const client = startCli(['connect', '127.0.0.1', String(listener.port), '--no-verify'], { home: await clientHome() })
      client.child.stdin!.write('hello\n')
      await listener.cli.waitForStderr(/got hello/)
      listener.cli.child.kill('SIGTERM')
      await listener.cli.waitForStderr(/SIGTERM: draining 1 connection/)
      // Accepting stopped at once.
      await sleep(100)
      const refused = await runCli(['connect', '127.0.0.1', String(listener.port), '--no-verify'], { home: await clientHome(), input: 'x\n' })
      expect(refused.code).to.equal(5)
      // The reply comes, and the server ends the channel; the client ends its side once its
      // input is over, and the listener then exits 0.
      await client.waitForStdout(/HELLO\n/)
      expect(listener.cli.child.exitCode).to.equal(null)
      client.send('')
      const result = await client.result()
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stdout.toString()).to.equal('HELLO\n')
      const server = await listener.cli.result()
      expect(server.code, server.stderr).to.equal(0)
      expect(server.stderr).to.match(/closed after [\d.]+ s, 1 message in, 1 out: drained/)
    })

    it('--echo drains on SIGINT too; with nothing open it exits 0 at once', async () => {
      const busy = await startListener(['--keep-open', '--echo'], { home: await serverHome() })
      const client = startCli(['connect', '127.0.0.1', String(busy.port), '--no-verify'], { home: await clientHome() })
      client.child.stdin!.write('a\n')
      await client.waitForStdout(/a\n/)
      busy.cli.child.kill('SIGINT')
      await busy.cli.waitForStderr(/SIGINT: draining 1 connection/)
      client.send('')
      expect((await client.result()).code).to.equal(0)
      const drained = await busy.cli.result()
      expect(drained.code, drained.stderr).to.equal(0)
      expect(drained.stderr).to.match(/1 message in, 1 out: drained/)

      const idle = await startListener(['--keep-open', '--echo'], { home: await serverHome() })
      const started = Date.now()
      idle.cli.child.kill('SIGTERM')
      expect((await idle.cli.result()).code).to.equal(0)
      expect(Date.now() - started).to.be.below(5000)
    })

    it('a second SIGTERM stops at once with 143; --drain-timeout closes what is left and exits 1', async () => {
      const forced = await startListener(['--keep-open', '--echo'], { home: await serverHome() })
      const held = startCli(['connect', '127.0.0.1', String(forced.port), '--no-verify', '--stream'], { home: await clientHome() })
      await forced.cli.waitForStderr(/connected with key/)
      forced.cli.child.kill('SIGTERM')
      await forced.cli.waitForStderr(/draining 1 connection/)
      const started = Date.now()
      forced.cli.child.kill('SIGTERM')
      expect((await forced.cli.result()).code).to.equal(143)
      expect(Date.now() - started).to.be.below(5000)
      held.send('')

      const timed = await startListener(['--keep-open', '--echo', '--drain-timeout', '300'], { home: await serverHome() })
      // A client that never ends its side: the drain cannot finish by itself.
      startCli(['connect', '127.0.0.1', String(timed.port), '--no-verify', '--stream'], { home: await clientHome() })
      await timed.cli.waitForStderr(/connected with key/)
      timed.cli.child.kill('SIGTERM')
      const result = await timed.cli.result(10_000)
      expect(result.code).to.equal(1)
      expect(result.stderr).to.include('the drain timeout (300 ms) ran out')
    })

    it('after --drain-timeout it exits 1 even while an --exec child holds on, and stops what the child started', async () => {
      // The shell waits on a sleep of its own: signalled alone, it would leave the sleep running,
      // and the sleep would hold the pipes open.
      const marker = `sleep 31.${process.pid % 1000}`
      const timed = await startListener(['--keep-open', '--exec', `${marker} & wait`, '--drain-timeout', '300'], { home: await serverHome() })
      startCli(['connect', '127.0.0.1', String(timed.port), '--no-verify', '--stream'], { home: await clientHome() })
      await timed.cli.waitForStderr(/connected with key/)
      const running = (): boolean => spawnSync('pgrep', ['-f', marker]).status === 0
      expect(running()).to.equal(true)
      const started = Date.now()
      timed.cli.child.kill('SIGTERM')
      expect((await timed.cli.result(10_000)).code).to.equal(1)
      expect(Date.now() - started).to.be.below(3000)
      await new Promise((resolve) => setTimeout(resolve, 300))
      expect(running(), `${marker} still running`).to.equal(false)
    })

    it('listen without --keep-open, waiting for its client: SIGTERM exits 0', async () => {
      const listener = await startListener(['--echo'], { home: await serverHome() })
      listener.cli.child.kill('SIGTERM')
      expect((await listener.cli.result()).code).to.equal(0)
    })

    // Relaying stdio (no --echo, no --exec): the README says that the drain "ends its side at
    // once", and that p2sn exits 0 "once every channel is closed". The listener's stdin stays
    // open in these tests: only the drain can end its side.
    it('relaying stdio: SIGTERM ends its side; the connect --stream client exits 0 with what it got, and listen exits 0', async function () {
      this.timeout(40_000)
      const listener = await startListener([], { home: await serverHome() })
      const client = startCli(['connect', '127.0.0.1', String(listener.port), '--no-verify', '--stream'], { home: await clientHome() })
      client.child.stdin!.write('from the client\n')
      await listener.cli.waitForStdout(/from the client\n/)
      listener.cli.child.stdin!.write('from the listener\n')
      await client.waitForStdout(/from the listener\n/)
      listener.cli.child.kill('SIGTERM')
      await listener.cli.waitForStderr(/SIGTERM: draining 1 connection/)
      // The client's side is still open: what it sends is still printed, and listen waits for it.
      client.child.stdin!.write('after the signal\n')
      await listener.cli.waitForStdout(/after the signal\n/)
      expect(listener.cli.child.exitCode).to.equal(null)
      client.send('')
      const result = await client.result()
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stdout.toString()).to.equal('from the listener\n')
      const server = await listener.cli.result()
      expect(server.code, server.stderr).to.equal(0)
      expect(server.stdout.toString()).to.equal('from the client\nafter the signal\n')
      expect(server.stderr).to.match(/closed after [\d.]+ s, 2 messages in, 1 out: drained\n/)
    })

    it('relaying stdio: the end reaches the client at once, before the client ends its side', async function () {
      this.timeout(40_000)
      const listener = await startListener([], { home: await serverHome() })
      // Half-open, as connect's socket is: our side stays open after the server's end.
      const socket = await rawConnect(listener.port, true)
      const channel = wrap(socket, { role: 'client', keyPair: clientKey })
      try {
        const received = receivedBy(channel)
        channel.write('ping')
        await listener.cli.waitForStdout(/ping\n/)
        listener.cli.child.stdin!.write('pong\n')
        await until(() => received.length > 0, 10_000, 'the reply')
        const ended = nextEvent(channel, 'end', 10_000)
        const started = Date.now()
        listener.cli.child.kill('SIGTERM')
        await ended
        expect(Date.now() - started, 'from SIGTERM to the end').to.be.below(3000)
        expect(received).to.deep.equal(['pong'])
        expect(listener.cli.child.exitCode).to.equal(null)
        // Half-closed: our side still goes through.
        channel.write('late')
        await listener.cli.waitForStdout(/late\n/)
        channel.end()
        await nextEvent(channel, 'close', 10_000)
        const server = await listener.cli.result()
        expect(server.code, server.stderr).to.equal(0)
        expect(server.stdout.toString()).to.equal('ping\nlate\n')
      } finally {
        channel.destroy()
      }
    })

    it('--keep-open relaying stdio: SIGTERM stops reading stdin, ends every channel at once and refuses new clients; exit 0 once the clients end', async function () {
      this.timeout(40_000)
      const listener = await startListener(['--keep-open'], { home: await serverHome() })
      const home = await clientHome()
      // Two clients: connect --stream, and a half-open library client that sees when the end comes.
      const client = startCli(['connect', '127.0.0.1', String(listener.port), '--no-verify', '--stream'], { home })
      client.child.stdin!.write('from a\n')
      const channel = wrap(await rawConnect(listener.port, true), { role: 'client', keyPair: clientKey })
      try {
        const received = receivedBy(channel)
        channel.write('from b')
        await listener.cli.waitForStdout(/from a\n[^]*from b\n|from b\n[^]*from a\n/)
        listener.cli.child.stdin!.write('to all\n')
        await client.waitForStdout(/to all\n/)
        await until(() => received.length > 0, 10_000, 'the message to all')
        const ended = nextEvent(channel, 'end', 10_000)
        const started = Date.now()
        listener.cli.child.kill('SIGTERM')
        await listener.cli.waitForStderr(/SIGTERM: draining 2 connections/)
        // Neither client has ended its side: the listener ended its own.
        await ended
        expect(Date.now() - started, 'from SIGTERM to the end').to.be.below(3000)
        // stdin is no longer read: this reaches nobody.
        listener.cli.child.stdin!.write('too late\n')
        await sleep(100)
        const refused = await runCli(['connect', '127.0.0.1', String(listener.port), '--no-verify'], { home, input: 'x\n' })
        expect(refused.code, refused.stderr).to.equal(5)
        // The clients' sides are still open: what they send is still printed, and listen waits.
        client.child.stdin!.write('a again\n')
        channel.write('b again')
        await listener.cli.waitForStdout(/a again\n[^]*b again\n|b again\n[^]*a again\n/)
        expect(listener.cli.child.exitCode).to.equal(null)
        client.send('')
        const result = await client.result()
        expect(result.code, result.stderr).to.equal(0)
        expect(result.stdout.toString()).to.equal('to all\n')
        expect(listener.cli.child.exitCode).to.equal(null)
        channel.end()
        await nextEvent(channel, 'close', 10_000)
        expect(received).to.deep.equal(['to all'])
        const server = await listener.cli.result()
        expect(server.code, server.stderr).to.equal(0)
        expect(lines(server.stdout.toString()).sort()).to.deep.equal(['a again', 'b again', 'from a', 'from b'])
        expect(server.stderr.match(/closed after [\d.]+ s, 2 messages in, 1 out: drained\n/g), server.stderr).to.have.length(2)
      } finally {
        channel.destroy()
      }
    })

    it('a second signal during a relay drain stops at once: 143 for SIGTERM, 130 for SIGINT, whatever the first', async function () {
      this.timeout(60_000)
      const cases: Array<{ flags: string[], first: NodeJS.Signals, second: NodeJS.Signals, code: number }> = [
        { flags: [], first: 'SIGTERM', second: 'SIGTERM', code: 143 },
        { flags: ['--keep-open'], first: 'SIGINT', second: 'SIGINT', code: 130 },
        { flags: [], first: 'SIGTERM', second: 'SIGINT', code: 130 }
      ]
      for (const { flags, first, second, code } of cases) {
        const what = `listen ${flags.join(' ')}: ${first} then ${second}`
        const listener = await startListener(flags, { home: await serverHome() })
        // A client that never ends its side: the drain cannot finish by itself.
        const held = startCli(['connect', '127.0.0.1', String(listener.port), '--no-verify', '--stream'], { home: await clientHome() })
        held.child.stdin!.write('x\n')
        await listener.cli.waitForStdout(/x\n/)
        listener.cli.child.kill(first)
        await listener.cli.waitForStderr(new RegExp(`${first}: draining 1 connection`))
        const started = Date.now()
        listener.cli.child.kill(second)
        expect((await listener.cli.result(10_000)).code, what).to.equal(code)
        expect(Date.now() - started, what).to.be.below(5000)
        held.send('')
      }
    })

    describe('listen --stdio --echo', () => {
      /** Our side ends the session; the server, which had connected with our key, exits 0. */
      async function endedWithExit0 (channel: Channel, server: CliChild): Promise<void> {
        channel.end()
        const result = await server.result()
        expect(result.code, result.stderr).to.equal(0)
        expect(result.stderr).to.include(`connected with key ${clientKey.publicKey.fingerprint}`)
      }

      /** The trace lines of messages received, on stderr. */
      const messagesIn = (stderr: string): number => stderr.match(/^p2sn trace: <- message /gm)?.length ?? 0

      it('SIGTERM in a session: the requests it has read are answered, then it ends its side; exit 0 once the client ends', async function () {
        this.timeout(40_000)
        // Decrypted in a worker, so that requests read may still be being decrypted at the signal.
        const server = startCli(['listen', '--stdio', '--echo', '--trace', '--workers', '1'], { home: await serverHome() })
        const channel = wrap(joinDuplex(server.child.stdout!, server.child.stdin!), { role: 'client', keyPair: clientKey })
        try {
          const replies = receivedBy(channel)
          // Long ones: about 17 RSA blocks each to decrypt.
          const requests = Array.from({ length: 8 }, (_, i) => `${i} `.padEnd(4000, String.fromCharCode(97 + i)))
          for (const request of requests) channel.write(request)
          // Every request read: its frame received (the trace line comes before its decryption).
          await until(() => messagesIn(server.stderr) === requests.length, 10_000, `${requests.length} requests read; stderr: ${server.stderr}`)
          const ended = nextEvent(channel, 'end', 10_000)
          server.child.kill('SIGTERM')
          await ended
          expect(replies).to.deep.equal(requests)
          // Half-closed: a request after the end is read, and upsets nothing.
          channel.write('too late')
          await until(() => messagesIn(server.stderr) === requests.length + 1, 10_000, 'the late request read')
          await sleep(200)
          expect(server.child.exitCode).to.equal(null)
          await endedWithExit0(channel, server)
        } finally {
          channel.destroy()
        }
      })

      it('SIGTERM during its handshake: waits for the handshake, then ends its side and exits 0', async function () {
        this.timeout(40_000)
        const server = startCli(['listen', '--stdio', '--echo', '--drain-timeout', '10000'], { home: await serverHome() })
        // The server's bytes are held back until after the signal, so that the handshake is
        // under way when it comes.
        let held: Buffer[] | undefined = []
        const fromServer = new PassThrough()
        server.child.stdout!.on('data', (chunk: Buffer) => {
          if (held === undefined) fromServer.write(chunk)
          else held.push(chunk)
        })
        server.child.stdout!.once('end', () => { fromServer.end() })
        const channel = wrap(joinDuplex(fromServer, server.child.stdin!), { role: 'client', keyPair: clientKey })
        try {
          const replies = receivedBy(channel)
          const handshake = nextEvent(channel, 'handshake', 20_000)
          const ended = nextEvent(channel, 'end', 20_000)
          // The server has sent its key (step 2): the handshake is under way.
          await until(() => held!.length > 0, 10_000, 'the server\'s key')
          server.child.kill('SIGTERM')
          await sleep(500)
          expect(server.child.exitCode, server.stderr).to.equal(null)
          const backlog = held
          held = undefined
          for (const chunk of backlog) fromServer.write(chunk)
          await handshake
          await ended
          expect(replies).to.deep.equal([])
          await endedWithExit0(channel, server)
        } finally {
          channel.destroy()
        }
      })

      it('SIGTERM during a handshake that never completes: exit 1 at --drain-timeout, not before', async function () {
        this.timeout(30_000)
        // No handshake timeout: only the drain's deadline can end it.
        const server = startCli(['listen', '--stdio', '--echo', '--drain-timeout', '800', '--handshake-timeout', '0'], { home: await serverHome() })
        server.child.stdin!.write(Buffer.concat([Buffer.from(KEYWORD_PUBKEY), Buffer.from([FRAME_TERMINATOR])]))
        // Its key sent (step 2), it waits for ours, which never comes.
        await until(() => server.stdout.length > 0, 10_000, 'the server\'s key')
        const started = Date.now()
        server.child.kill('SIGTERM')
        const result = await server.result(10_000)
        const took = Date.now() - started
        expect(result.code, result.stderr).to.equal(1)
        expect(took, 'from SIGTERM to the exit').to.be.at.least(700).and.below(5000)
        expect(result.stderr).to.include('the drain timeout (800 ms) ran out')
        expect(result.stderr).not.to.match(/\n\s+at /)
      })
    })
  })

  describe('the connection log', () => {
    it('text: a timestamp on every connection line; nothing for a probe nor a health check', async () => {
      const listener = await startListener(['--keep-open', '--echo'], { home: await serverHome() })
      // A probe: connects and leaves.
      const probe = await rawConnect(listener.port)
      probe.end()
      await closedWithin(probe, 5000)
      // A health check: asks for the key (step 1), reads it, leaves.
      const check = await rawConnect(listener.port)
      check.write(Buffer.concat([Buffer.from(KEYWORD_PUBKEY), Buffer.from([FRAME_TERMINATOR])]))
      await new Promise((resolve) => check.once('data', resolve))
      check.end()
      await closedWithin(check, 5000)
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--no-verify'], { home: await clientHome(), input: 'a\nb\n' })
      expect(client.code, client.stderr).to.equal(0)
      await listener.cli.waitForStderr(/closed after/)
      const connectionLines = lines(listener.cli.stderr).filter((line) => !line.includes('listening on'))
      expect(connectionLines, listener.cli.stderr).to.have.length(3)
      for (const line of connectionLines) expect(line).to.match(new RegExp(`^p2sn: ${ISO.source} 127\\.0\\.0\\.1:\\d+ `))
      expect(connectionLines[0]).to.match(/ opened$/)
      expect(connectionLines[1]).to.include(`connected with key ${clientKey.publicKey.fingerprint}`)
      expect(connectionLines[2]).to.match(/closed after \d+\.\d{3} s, 2 messages in, 2 out: ended$/)
    })

    it('--log-format json: one valid JSON object per line, with the fields', async () => {
      const listener = await startListener(['--keep-open', '--echo', '--log-format', 'json'], { home: await serverHome() })
      const probe = await rawConnect(listener.port)
      probe.end()
      await closedWithin(probe, 5000)
      const client = await runCli(['connect', '127.0.0.1', String(listener.port), '--no-verify'], { home: await clientHome(), input: 'a\n' })
      expect(client.code, client.stderr).to.equal(0)
      // A handshake that fails: garbage.
      const garbage = await rawConnect(listener.port)
      garbage.end('GET / HTTP/1.0\r\n\r\n')
      await closedWithin(garbage, 5000)
      await listener.cli.waitForStderr(/"event":"closed"[^\n]*\n[^]*"event":"closed"/)
      listener.cli.child.kill('SIGTERM')
      await listener.cli.result()
      const records = lines(listener.cli.stderr).map((line) => JSON.parse(line) as Record<string, unknown>)
      expect(records.map((r) => r.event)).to.deep.equal(['listening', 'opened', 'handshake', 'closed', 'opened', 'closed', 'drain'])
      for (const record of records) expect(record.time).to.match(new RegExp(`^${ISO.source}$`))
      const [, opened, handshake, closed, , failed] = records
      expect(opened).to.include({ event: 'opened', address: '127.0.0.1' })
      expect(opened!.port).to.be.a('number')
      expect(handshake).to.include({ fingerprint: clientKey.publicKey.fingerprint, address: '127.0.0.1' })
      expect(closed).to.include({ fingerprint: clientKey.publicKey.fingerprint, messagesIn: 1, messagesOut: 1, reason: 'ended' })
      expect(closed!.durationMs).to.be.a('number')
      expect(failed!.reason).to.match(/^handshake failed: /)
      expect(failed!.code).to.match(/^ERR_P2SN_/)
    })
  })

  describe('key rotation', () => {
    it('two known_peers lines for one host:port accept either key; --accept-new adds a line; --fingerprint can be repeated', async () => {
      const home = await clientHome()
      const knownPeers = path.join(home, 'known_peers')
      const old = await startListener(['--echo', '--keep-open'], { home: await serverHome() })
      const target = `127.0.0.1:${old.port}`
      await fs.writeFile(knownPeers, `${target} ${serverKey.publicKey.fingerprint}\n# the next key\n${target} ${newServerKey.publicKey.fingerprint}\n`)
      const connect = async (...flags: string[]): Promise<CliResult> =>
        await runCli(['connect', '127.0.0.1', String(old.port), ...flags], { home, input: 'hi\n' })

      const onOld = await connect()
      expect(onOld.code, onOld.stderr).to.equal(0)
      expect(onOld.stderr).to.equal('')
      const pinnedBoth = await connect('--fingerprint', newServerKey.publicKey.fingerprint, '--fingerprint', serverKey.publicKey.fingerprint)
      expect(pinnedBoth.code, pinnedBoth.stderr).to.equal(0)

      // The server rolls onto the new key: no failed connection.
      old.cli.child.kill('SIGKILL')
      await old.cli.done
      await startListener(['--echo', '--keep-open'], { home: await serverHome(newServerKey), port: old.port })
      const onNew = await connect()
      expect(onNew.code, onNew.stderr).to.equal(0)
      expect(onNew.stdout.toString()).to.equal('hi\n')
      const pinnedAgain = await connect('--fingerprint', serverKey.publicKey.fingerprint, '--fingerprint', newServerKey.publicKey.fingerprint)
      expect(pinnedAgain.code, pinnedAgain.stderr).to.equal(0)
      const wrongPins = await connect('--fingerprint', serverKey.publicKey.fingerprint, '--fingerprint', clientKey.publicKey.fingerprint)
      expect(wrongPins.code).to.equal(3)
      expect(wrongPins.stderr).to.include('any of')

      // Only the old key known: refused; --accept-new adds the new one, keeping the old.
      await fs.writeFile(knownPeers, `${target} ${serverKey.publicKey.fingerprint}\n`)
      expect((await connect()).code).to.equal(3)
      const added = await connect('--accept-new')
      expect(added.code, added.stderr).to.equal(0)
      expect(await fs.readFile(knownPeers, 'utf8')).to.equal(`${target} ${serverKey.publicKey.fingerprint}\n${target} ${newServerKey.publicKey.fingerprint}\n`)
      expect((await connect()).code).to.equal(0)
    })
  })
})
