/**
 * Typed listener overloads for the classes that emit events of their own, so that
 * `channel.on('handshake', (peer) => …)` gives `peer` its type. A class extends its base class
 * seen through {@link WithEvents}: the typed overloads come first, and the base class's own
 * overloads still follow them for every other event.
 * @module
 */

/** A class's own events: each name with the arguments its listeners get. */
export type EventMap<T> = { [K in keyof T]: unknown[] }

/**
 * A listener of the untyped overloads, as `node:events` declares it.
 * @inline
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyListener = (...args: any[]) => void

/** Listener methods typed by `Events`, the events of a class beside its base class's. */
export interface TypedListeners<Events extends EventMap<Events>> {
  /** Listens for one of this class's own events, the listener's arguments typed. */
  on<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  /** Listens for any other event, as `EventEmitter` does. */
  on (event: string | symbol, listener: AnyListener): this
  /** Listens once for one of this class's own events, the listener's arguments typed. */
  once<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  /** Listens once for any other event, as `EventEmitter` does. */
  once (event: string | symbol, listener: AnyListener): this
  /** Removes a listener of one of this class's own events. */
  off<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  /** Removes a listener of any other event, as `EventEmitter` does. */
  off (event: string | symbol, listener: AnyListener): this
  /** Same as `on`: listens for one of this class's own events, the listener's arguments typed. */
  addListener<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  /** Same as `on`: listens for any other event. */
  addListener (event: string | symbol, listener: AnyListener): this
  /** Same as `off`: removes a listener of one of this class's own events. */
  removeListener<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  /** Same as `off`: removes a listener of any other event. */
  removeListener (event: string | symbol, listener: AnyListener): this
  /** Like `on`, but the listener runs before those already added: for one of this class's own events, its arguments typed. */
  prependListener<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  /** Like `on`, but the listener runs before those already added: for any other event. */
  prependListener (event: string | symbol, listener: AnyListener): this
  /** Like `once`, but the listener runs before those already added: for one of this class's own events, its arguments typed. */
  prependOnceListener<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): this
  /** Like `once`, but the listener runs before those already added: for any other event. */
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
