/** Seconds (the policy's and the config's unit) to the milliseconds timers, lru-cache and Redis take; never 0, which both read as "no expiry". */
export function ms(seconds: number): number {
  return Math.max(1, Math.round(seconds * 1000));
}
