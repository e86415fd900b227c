/**
 * Typed listener overloads for the classes that emit events of their own, so that
 * `channel.on('handshake', (peer) => …)` gives `peer` its type. A class extends its base class
 * seen through {@link WithEvents}: the typed overloads come first, and the base class's own
 * overloads still follow them for every other event.
 * @module
 */

/** A class's own events: each name with the arguments its listeners get. */
export type EventMap<T> = { [K in keyof T]: unknown[] }

/** A listener of the untyped overloads, as `node:events` declares it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyListener = (...args: any[]) => void

/** Listener methods typed by `Events`, the events of a class beside its base class's. */
export interface TypedListeners<Events extends EventMap<Events>> {
  on<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  on (event: string | symbol, listener: AnyListener): this
  once<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  once (event: string | symbol, listener: AnyListener): this
  off<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  off (event: string | symbol, listener: AnyListener): this
  addListener<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  addListener (event: string | symbol, listener: AnyListener): this
  removeListener<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  removeListener (event: string | symbol, listener: AnyListener): this
  prependListener<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  prependListener (event: string | symbol, listener: AnyListener): this
  prependOnceListener<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  prependOnceListener (event: string | symbol, listener: AnyListener): this
}

/** A constructor. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Constructor = abstract new (...args: any[]) => object

/**
 * `Base`'s constructor, typed so that its instances also have the listener overloads of
 * `Events`: `class Channel extends (Duplex as WithEvents<typeof Duplex, ChannelEvents>)`.
 * Only the type changes; the class is `Base` itself.
 */
export type WithEvents<Base extends Constructor, Events extends EventMap<Events>> =
  new (...args: ConstructorParameters<Base>) => TypedListeners<Events> & InstanceType<Base>
