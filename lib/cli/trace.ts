/**
 * `--trace`: one stderr line per frame sent or received, handshake and messages alike, for
 * debugging interop:
 *
 *     p2sn trace: -> PUBKEY            11 bytes
 *     p2sn trace: <- server key       604 bytes (base64 PEM)
 *
 * `->` is sent, `<-` received; the length is the frame's, terminator excluded.
 * @module
 */
import type { TraceEvent } from '../index.js'

const PEM_START = Buffer.from('-----BEGIN')

/** A `trace` option for a channel; `label` (the peer's address) tells connections apart. */
export function frameTracer (label?: string): (event: TraceEvent) => void {
  const prefix = label === undefined ? 'p2sn trace:' : `p2sn trace ${label}:`
  return ({ direction, step, frame }) => {
    const arrow = direction === 'out' ? '->' : '<-'
    let detail = ''
    if (step === 'server key' || step === 'client key') {
      detail = frame.subarray(0, PEM_START.length).equals(PEM_START) ? ' (raw PEM)' : ' (base64 PEM)'
    }
    process.stderr.write(`${prefix} ${arrow} ${step.padEnd(10)} ${String(frame.length).padStart(8)} bytes${detail}\n`)
  }
}
