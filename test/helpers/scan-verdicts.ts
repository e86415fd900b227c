/**
 * What the scan tests share: the report of a server that does everything right, item by item.
 * @module
 */
import type { Verdict } from '../../lib/index.js'

/** Verdicts by item id. */
export type Verdicts = Record<string, Verdict>

/** A plain server that does everything right: only authentication warns, as it always does without --auth. */
export const ALL_RIGHT: Readonly<Verdicts> = {
  'identity.key': 'pass',
  'identity.same-key': 'pass',
  'conformance.step2': 'pass',
  'conformance.step4': 'pass',
  'conformance.keycheck': 'pass',
  'conformance.request': 'pass',
  'conformance.errorkey': 'pass',
  'oracle.padding': 'pass',
  'limits.unterminated-handshake': 'pass',
  'limits.unterminated-message': 'pass',
  'limits.key-1024': 'pass',
  'limits.key-512': 'pass',
  'limits.multi-block': 'pass',
  'limits.silent': 'pass',
  'auth.authentication': 'warn'
}
