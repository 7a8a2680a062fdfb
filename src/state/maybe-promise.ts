/**
 * Values that are ready now or later. The in-memory stores and the DNS cache
 * answer at once, a Redis store or a DNS query later; forcing the ready case
 * through a promise costs an allocation and a microtask per lookup, several
 * per connection (bench/verdict.ts measured the promise chains of a fully
 * cached vet as its largest cost). These helpers run the continuation at once
 * when nothing is pending, and only go through promises when something is.
 */

/** A value or a promise of one. */
export type MaybePromise<T> = T | Promise<T>;

/** `then(value)`, now when `value` is ready, after it settles when it is a promise. */
export function when<T, R>(value: MaybePromise<T>, then: (value: T) => MaybePromise<R>): MaybePromise<R> {
  return value instanceof Promise ? value.then(then) : then(value);
}

/** `then(values)` with every value ready: now when none is pending, else once all have settled (as Promise.all). */
export function whenAll<T, R>(values: readonly MaybePromise<T>[], then: (values: T[]) => MaybePromise<R>): MaybePromise<R> {
  return values.some((v) => v instanceof Promise) ? Promise.all(values).then(then) : then(values as T[]);
}
