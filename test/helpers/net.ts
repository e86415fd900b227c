/**
 * Network helpers shared by the tests and the benchmarks: a local listen, a free port, and a
 * relay that sits on the path between a client and a server. No import of lib/ or chai here:
 * the benchmarks load this file too.
 * @module
 */
import net, { type AddressInfo } from 'node:net'

/** What {@link listenLocal} needs of a server: a `net.Server` or the project's `Server`. */
interface ListenableServer {
  listen (port: number, host: string, callback: () => void): unknown
  address (): AddressInfo | string | null
}

/** Starts `server` listening on a free port of 127.0.0.1 and resolves with that port. */
export async function listenLocal (server: ListenableServer): Promise<number> {
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return (server.address() as AddressInfo).port
}

/** A port nothing listens on: bound to 0, then closed. */
export async function unusedPort (): Promise<number> {
  const server = net.createServer()
  const port = await listenLocal(server)
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  return port
}

/**
 * A TCP relay to 127.0.0.1:`serverPort`, not yet listening (start it with {@link listenLocal};
 * closing it is the caller's). For each connection it opens one upstream to the server,
 * destroys both when either fails, and pipes what the server sends back to the client as it
 * comes; `clientSide` decides what of the client's bytes goes up: all of it, some, or altered.
 * That is the part an attacker on the path plays, so each test writes its own.
 */
export function relayTo (serverPort: number, clientSide: (socket: net.Socket, upstream: net.Socket) => void): net.Server {
  return net.createServer((socket) => {
    const upstream = net.connect(serverPort, '127.0.0.1')
    for (const s of [socket, upstream]) s.on('error', () => { socket.destroy(); upstream.destroy() })
    clientSide(socket, upstream)
    upstream.pipe(socket)
  })
}
