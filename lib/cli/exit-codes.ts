/**
 * Exit codes of the `p2sn` command: scripts may rely on them.
 * @module
 */

/** Every exit code `p2sn` uses, by meaning. */
export const EXIT = {
  /** The command did what was asked. */
  ok: 0,
  /**
   * Failure at run time: connection lost, handshake or protocol error, I/O error; for `listen`,
   * connections still open when `--drain-timeout` ran out after SIGTERM or SIGINT.
   */
  failure: 1,
  /** The command line is wrong: unknown command or option, missing or malformed argument. */
  usage: 2,
  /**
   * The peer's key was refused: it differs from known_peers, `--fingerprint` or `--allow`, or
   * (with `--auth`) from the key the peer proved in TLS.
   */
  peerRefused: 3,
  /** A key file could not be used: missing, unreadable or invalid, or keygen's target exists. */
  keyFile: 4,
  /**
   * `connect` could not reach a P2SN server: connection refused, host unreachable or not found,
   * or a connection the server closed before sending a byte (a full server, `--max-connections`).
   * A handshake that fails later is {@link EXIT.failure}.
   */
  cannotConnect: 5
} as const

/** One of {@link EXIT}. */
export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

/** The table printed by `p2sn --help`. */
export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  failure at run time: connection lost, handshake or protocol error, I/O error,
     a request the server's handler failed on (P2SN:UNEXPECTEDERROR); listen: connections
     still open at the --drain-timeout deadline after SIGTERM or SIGINT
  2  usage error: unknown command or option, missing or malformed argument
  3  peer key refused: the peer's key differs from known_peers, --fingerprint or
     --allow, or (with --auth) from the key it proved
  4  key file error: missing, unreadable or invalid key file, or keygen's target exists
  5  cannot connect: connection refused, host unreachable or not found, or closed by
     the server before it sent a byte (a full server: listen --max-connections)
  130, 143  interrupted (SIGINT, SIGTERM); listen drains on the first signal and exits 0
     once every connection is over, and exits 130 or 143 at a second signal`
