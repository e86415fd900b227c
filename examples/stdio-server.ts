// A P2SN server on this process's own stdin/stdout: run it as a child, or at the far end of
// `ssh host node stdio-server.ts`. Nothing else may write to stdout.
import { joinDuplex, wrap } from 'p2sn'

const channel = wrap(joinDuplex(process.stdin, process.stdout), { role: 'server' })

channel.on('data', (message: Buffer) => {
  channel.write(`child ${process.pid} got: ${message.toString()}`)
})
// The parent hung up: finish our side too, and the process exits.
channel.on('end', () => channel.end())
