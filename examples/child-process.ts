// Wrap a child process's stdio: the child (stdio-server.ts) speaks P2SN on its stdin/stdout.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { joinDuplex, wrap } from 'p2sn'

const script = fileURLToPath(new URL('./stdio-server.ts', import.meta.url))
// process.execArgv carries the TypeScript loader (--import tsx) to the child.
const child = spawn(process.execPath, [...process.execArgv, script], { stdio: ['pipe', 'pipe', 'inherit'] })

const channel = wrap(joinDuplex(child.stdout, child.stdin), { role: 'client' })

for (const text of ['ping', 'pong']) {
  console.log((await channel.request(text)).toString().replace(/\d+/, 'PID'))
}
channel.end()
child.on('exit', (code) => console.log('child exited with', code))
