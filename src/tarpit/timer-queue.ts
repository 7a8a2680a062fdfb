/**
 * One timer structure for every held socket (docs/design.md §3 tarpit, issue 4): a
 * binary min-heap of deadlines with a single armed `setTimeout`, re-armed to
 * the earliest deadline. Tens of thousands of holds then cost one Node timer
 * and one small entry each, instead of a timer object and a closure per wait.
 *
 * Entries point at a target object (the session) whose `onTimer()` runs when
 * the deadline passes; cancelling removes the entry from the heap at once, by
 * the index it carries, so `size` counts only live entries and a cancelled
 * hold leaves nothing behind.
 *
 * The armed timer is not unref'd: a process holding sockets is alive anyway,
 * and an unref'd timer could let a test or a drain finish before a deadline.
 * When the heap empties the timer is cleared, so an idle queue keeps nothing alive.
 *
 * Times are `performance.now()` milliseconds: monotonic, so a wall-clock step
 * can neither release every hold at once nor freeze them.
 */

/** What a deadline calls. A method, so scheduling allocates no closure. */
export interface TimerTarget {
  onTimer(): void;
}

/** Opaque: what `schedule` returns and `cancel` takes. */
export interface TimerHandle {
  /** `performance.now()` milliseconds at which the target is due. */
  readonly deadline: number;
}

class Entry implements TimerHandle {
  constructor(
    readonly deadline: number,
    /** Breaks ties so equal deadlines fire in the order they were scheduled. */
    readonly seq: number,
    public target: TimerTarget | undefined,
    /** Position in the heap; -1 once fired or cancelled. */
    public index: number,
  ) {}
}

export interface TimerQueueOptions {
  /** A target's onTimer threw: the other due targets still run. Default: a process warning. */
  readonly onError?: (err: unknown) => void;
}

function before(a: Entry, b: Entry): boolean {
  return a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq);
}

export class TimerQueue {
  private readonly heap: Entry[] = [];
  private seq = 0;
  private timeout: NodeJS.Timeout | undefined;
  /** Deadline the armed timeout was set for; Infinity when none is armed. */
  private armedAt = Infinity;
  private readonly onError: (err: unknown) => void;
  private readonly fireBound = (): void => this.fire();

  constructor(options: TimerQueueOptions = {}) {
    this.onError = options.onError ?? ((err: unknown) => process.emitWarning(err instanceof Error ? err : new Error(String(err)), 'TimerQueueError'));
  }

  /** Live (scheduled, not yet fired or cancelled) entries. */
  get size(): number {
    return this.heap.length;
  }

  /** Earliest live deadline, or undefined when the queue is empty. */
  get nextDeadline(): number | undefined {
    return this.heap[0]?.deadline;
  }

  /** Deadline the single timeout is armed for, or undefined when none is armed. */
  get armedDeadline(): number | undefined {
    return this.armedAt === Infinity ? undefined : this.armedAt;
  }

  /** Calls `target.onTimer()` once, `delayMs` from now (0 or less: at the next timer tick). O(log n). */
  schedule(target: TimerTarget, delayMs: number): TimerHandle {
    const entry = new Entry(performance.now() + Math.max(0, delayMs), this.seq++, target, this.heap.length);
    this.heap.push(entry);
    this.siftUp(entry.index);
    if (entry.deadline < this.armedAt) this.arm(entry.deadline);
    return entry;
  }

  /** Removes a scheduled entry; false when it already fired or was cancelled. O(log n). */
  cancel(handle: TimerHandle): boolean {
    if (!(handle instanceof Entry) || handle.index < 0 || this.heap[handle.index] !== handle) return false;
    this.removeAt(handle.index);
    // A cancelled top leaves the timer armed early; it fires, finds nothing due
    // and re-arms. Only an empty heap is worth a clearTimeout.
    if (this.heap.length === 0) this.disarm();
    return true;
  }

  /** Drops every entry without calling it. */
  clear(): void {
    for (const e of this.heap) {
      e.index = -1;
      e.target = undefined;
    }
    this.heap.length = 0;
    this.disarm();
  }

  private fire(): void {
    this.timeout = undefined;
    this.armedAt = Infinity;
    const now = performance.now();
    // Entries scheduled by a target while we run wait for the next tick, so a
    // target that reschedules itself at 0 ms cannot spin this loop forever.
    const lastSeq = this.seq;
    for (;;) {
      const top = this.heap[0];
      if (top === undefined || top.deadline > now || top.seq >= lastSeq) break;
      this.removeAt(0);
      const target = top.target;
      top.target = undefined;
      try {
        target?.onTimer();
      } catch (err) {
        this.onError(err);
      }
    }
    const next = this.heap[0];
    if (next !== undefined && next.deadline < this.armedAt) this.arm(next.deadline);
  }

  private arm(deadline: number): void {
    if (this.timeout !== undefined) clearTimeout(this.timeout);
    // setTimeout has millisecond resolution: round up so we never fire early
    // (an early fire finds nothing due and re-arms, which is harmless but wasted).
    this.timeout = setTimeout(this.fireBound, Math.max(1, Math.ceil(deadline - performance.now())));
    this.armedAt = deadline;
  }

  private disarm(): void {
    if (this.timeout !== undefined) clearTimeout(this.timeout);
    this.timeout = undefined;
    this.armedAt = Infinity;
  }

  private removeAt(i: number): void {
    const heap = this.heap;
    const removed = heap[i]!;
    removed.index = -1;
    const last = heap.pop()!;
    if (last === removed) return;
    heap[i] = last;
    last.index = i;
    // The moved entry may belong above or below its new place.
    if (i > 0 && before(last, heap[(i - 1) >> 1]!)) this.siftUp(i);
    else this.siftDown(i);
  }

  private siftUp(i: number): void {
    const heap = this.heap;
    const entry = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (!before(entry, parent)) break;
      heap[i] = parent;
      parent.index = i;
      i = p;
    }
    heap[i] = entry;
    entry.index = i;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const entry = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && before(heap[r]!, heap[l]!) ? r : l;
      const child = heap[c]!;
      if (!before(child, entry)) break;
      heap[i] = child;
      child.index = i;
      i = c;
    }
    heap[i] = entry;
    entry.index = i;
  }
}

/** The process-wide queue every hold uses unless its options name another. */
export const holdTimers = new TimerQueue();
