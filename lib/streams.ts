/**
 * The stream classes the layers and the channel subclass. At run time they are
 * readable-stream's, so that every Node line, Bun and Deno run the same stream code; their
 * types are `node:stream`'s, so that the published declarations stand on `@types/node` alone
 * (readable-stream ships no types of its own, and its `@types` package is a devDependency only).
 * readable-stream 4 follows the `node:stream` API of Node 18 and later, which is what these
 * declarations promise.
 * @module
 */
import type * as NodeStream from 'node:stream'
import * as ReadableStream from 'readable-stream'

/** readable-stream's `Duplex`, typed as `node:stream`'s. */
export const Duplex = ReadableStream.Duplex as unknown as typeof NodeStream.Duplex
/** readable-stream's `Transform`, typed as `node:stream`'s. */
export const Transform = ReadableStream.Transform as unknown as typeof NodeStream.Transform
/** A duplex stream, as `node:stream` declares it. */
export type Duplex = NodeStream.Duplex
/** A transform stream, as `node:stream` declares it. */
export type Transform = NodeStream.Transform
