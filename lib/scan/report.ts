/**
 * What `p2sn scan` reports: items with a verdict and one line of evidence, grouped by section,
 * and their rendering as text for people (JSON for machines is the report object itself).
 * @module
 */

/** An item's verdict, as ssh-audit and testssl.sh grade theirs. */
export type Verdict = 'pass' | 'warn' | 'fail' | 'n/a'

/** The report's sections, in the order printed. */
export const SCAN_SECTIONS = ['identity', 'conformance', 'padding oracle', 'limits', 'authentication'] as const

/** One of {@link SCAN_SECTIONS}. */
export type ScanSection = (typeof SCAN_SECTIONS)[number]

/** One thing checked. */
export interface ScanItem {
  /** Stable name for scripts and tests: `identity.key`, `oracle.padding`, `limits.key-512`, … */
  id: string
  /** The section it is printed under. */
  section: ScanSection
  /** What was checked, in a few words. */
  title: string
  /** pass, warn, fail, or n/a when it could not be checked. */
  verdict: Verdict
  /** What was seen, in one line. */
  evidence: string
}

/** A whole scan. */
export interface ScanReport {
  /** The server scanned. */
  target: {
    /** Its host, as given. */
    host: string
    /** Its port. */
    port: number
  }
  /** Whether the scan ran through the authenticated mode (`--auth`). */
  auth: boolean
  /** When the scan began, ISO 8601. */
  startedAt: string
  /** How long the scan took, in ms. */
  durationMs: number
  /** Connections the scan opened. */
  connections: number
  /** Bytes the scan sent, over all its connections. */
  bytesSent: number
  /** Every item, in the order of {@link SCAN_SECTIONS}. */
  items: ScanItem[]
  /** How many items got each verdict. */
  summary: Record<Verdict, number>
  /** True when some item failed: the CLI then exits 1. */
  failed: boolean
}

/** The summary counts and `failed` of `items`. */
export function summarize (items: readonly ScanItem[]): Pick<ScanReport, 'summary' | 'failed'> {
  const summary: Record<Verdict, number> = { pass: 0, warn: 0, fail: 0, 'n/a': 0 }
  for (const item of items) summary[item.verdict]++
  return { summary, failed: summary.fail > 0 }
}

/** The report as text: a heading, each section's items, and a summary line. */
export function formatScanReport (report: ScanReport): string {
  const width = Math.max(...report.items.map((item) => item.title.length))
  const lines = [`p2sn scan ${report.target.host} ${report.target.port}${report.auth ? ' --auth' : ''}  (${report.startedAt})`]
  for (const section of SCAN_SECTIONS) {
    const items = report.items.filter((item) => item.section === section)
    if (items.length === 0) continue
    lines.push('', section[0]!.toUpperCase() + section.slice(1))
    for (const item of items) lines.push(`  ${item.verdict.padEnd(4)}  ${item.title.padEnd(width)}  ${item.evidence}`)
  }
  const { pass, warn, fail } = report.summary
  const seconds = (report.durationMs / 1000).toFixed(1)
  lines.push('', `Summary: ${report.failed ? 'FAIL' : 'ok'}: ${pass} pass, ${warn} warn, ${fail} fail, ${report.summary['n/a']} n/a ` +
    `(${seconds} s, ${report.connections} connections, ${formatBytes(report.bytesSent)} sent)`)
  return lines.join('\n') + '\n'
}

/** Bytes in B, KiB or MiB, one decimal where it helps. */
export function formatBytes (bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(bytes < 10 * 1024 ? 1 : 0)} KiB`
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}
