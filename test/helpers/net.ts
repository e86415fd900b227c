/**
 * Network helpers shared by the tests and the benchmarks.
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
