/**
 * `--progress`: bytes sent and received, and the rate, on stderr while a transfer runs. At a
 * terminal the line is redrawn in place four times a second; elsewhere a line is printed each
 * second that something moved. A summary line ends it.
 * @module
 */

/** A running count of what went each way. */
export class Progress {
  #sent = 0
  #received = 0
  #shown = ''
  readonly #start = Date.now()
  readonly #tty = process.stderr.isTTY === true
  readonly #timer: NodeJS.Timeout

  constructor () {
    this.#timer = setInterval(() => { this.#show(false) }, this.#tty ? 250 : 1000)
    this.#timer.unref()
  }

  /** Counts `bytes` of a message sent. */
  sent (bytes: number): void {
    this.#sent += bytes
  }

  /** Counts `bytes` of a message received. */
  received (bytes: number): void {
    this.#received += bytes
  }

  /** Stops the updates and prints the summary. */
  stop (): void {
    clearInterval(this.#timer)
    this.#show(true)
  }

  #show (final: boolean): void {
    const seconds = Math.max((Date.now() - this.#start) / 1000, 0.001)
    const rate = (this.#sent + this.#received) / seconds
    const text = `p2sn: sent ${bytes(this.#sent)}, received ${bytes(this.#received)} in ${seconds.toFixed(1)} s (${bytes(rate)}/s)`
    const counts = `${this.#sent}/${this.#received}`
    if (!final && counts === this.#shown) return
    this.#shown = counts
    if (this.#tty) process.stderr.write(`\r${text}\x1b[K${final ? '\n' : ''}`)
    else process.stderr.write(`${text}\n`)
  }
}

function bytes (count: number): string {
  if (count < 1024) return `${Math.round(count)} B`
  if (count < 1024 * 1024) return `${(count / 1024).toFixed(1)} KiB`
  if (count < 1024 * 1024 * 1024) return `${(count / 1024 / 1024).toFixed(1)} MiB`
  return `${(count / 1024 / 1024 / 1024).toFixed(2)} GiB`
}
