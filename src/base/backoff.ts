/**
 * Backoff computes exponential delays with a cap, after client-go's
 * ItemExponentialFailureRateLimiter. Every Baton backoff (work queue retries,
 * crash restarts, rejected slots) is one of these, so each is tunable the same
 * way.
 */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor?: number;
}

export function backoffDelay(opts: BackoffOptions, failures: number): number {
  if (failures <= 0) return 0;
  const factor = opts.factor ?? 2;
  const d = opts.initialMs * Math.pow(factor, failures - 1);
  return Math.min(opts.maxMs, Number.isFinite(d) ? d : opts.maxMs);
}

/** KeyedBackoff remembers consecutive failures per key; `forget` resets one on success. */
export class KeyedBackoff {
  private failures = new Map<string, number>();
  constructor(private readonly opts: BackoffOptions) {}

  /** next records one more failure for key and returns the delay before the next attempt. */
  next(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    return backoffDelay(this.opts, n);
  }

  count(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }
}
