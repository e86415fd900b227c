/**
 * Exit codes of the `p2sn` command: scripts may rely on them.
 * @module
 */

/** Every exit code `p2sn` uses, by meaning. */
export const EXIT = {
  /** The command did what was asked. */
  ok: 0,
  /** Failure at run time: connection refused or lost, handshake or protocol error, I/O error. */
  failure: 1,
  /** The command line is wrong: unknown command or option, missing or malformed argument. */
  usage: 2,
  /**
   * The peer's key was refused: it differs from known_peers, `--fingerprint` or `--allow`, or
   * (with `--auth`) from the key the peer proved in TLS.
   */
  peerRefused: 3,
  /** A key file could not be used: missing, unreadable or invalid, or keygen's target exists. */
  keyFile: 4
} as const

/** One of {@link EXIT}. */
export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

/** The table printed by `p2sn --help`. */
export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  failure at run time: connection refused or lost, handshake or protocol error,
     I/O error, a request the server's handler failed on (P2SN:UNEXPECTEDERROR)
  2  usage error: unknown command or option, missing or malformed argument
  3  peer key refused: the peer's key differs from known_peers, --fingerprint or
     --allow, or (with --auth) from the key it proved
  4  key file error: missing, unreadable or invalid key file, or keygen's target exists
  130, 143  interrupted (SIGINT, SIGTERM)`
