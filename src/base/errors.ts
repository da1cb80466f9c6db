/**
 * The catalogue of coded errors, after fastify's FST_ERR_* table: one place
 * that maps every error code to its HTTP status. A test checks that each code
 * is documented in docs/errors.md; a retired code is never reused.
 */

export const ERROR_CODES = {
  BATON_ERR_VALIDATION: 422,
  BATON_ERR_MANIFEST: 422,
  BATON_ERR_NOT_FOUND: 404,
  BATON_ERR_CONFLICT: 409,
  BATON_ERR_ALREADY_EXISTS: 409,
  BATON_ERR_UNAUTHORIZED: 401,
  BATON_ERR_FORBIDDEN: 403,
  BATON_ERR_GONE: 410,
  BATON_ERR_BAD_REQUEST: 400,
  BATON_ERR_INCOMPATIBLE_AGENT: 426,
  BATON_ERR_TOO_LARGE: 413,
  BATON_ERR_UNAVAILABLE: 503,
  /** The store has no quorum (etcd): nothing was written; reads may be stale. */
  BATON_ERR_STORE_UNAVAILABLE: 503,
  /** A controller's write on a server that lost the leadership: refused by the fence, nothing written. */
  BATON_ERR_NOT_LEADER: 503,
  BATON_ERR_TLS: 495,
  BATON_ERR_JOIN_REFUSED: 403,
  BATON_ERR_RATE_LIMITED: 429,
  /** A write would take a stack past its quota (Kubernetes answers `exceeded quota` with 403 too). */
  BATON_ERR_QUOTA_EXCEEDED: 403,
  BATON_ERR_INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** ErrorDetail names one problem: where (a key path like services.web.ports[0], and a line when known) and what. */
export interface ErrorDetail {
  path: string;
  message: string;
  line?: number;
}

/**
 * BatonError is an expected failure with a code; the CLI prints its message
 * without a stack. `retryAfterMs` (a refusal under a limit) becomes the
 * answer's Retry-After header.
 */
export class BatonError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ErrorDetail[] = [],
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'BatonError';
    this.status = ERROR_CODES[code];
  }

  toJSON() {
    return { error: { code: this.code, message: this.message, ...(this.details.length ? { details: this.details } : {}) } };
  }
}

export function isBatonError(e: unknown): e is BatonError {
  return e instanceof BatonError;
}

/** formatDetails renders details one per line as "path (line N): message". */
export function formatDetails(details: ErrorDetail[]): string {
  return details.map((d) => `  ${d.path}${d.line ? ` (line ${d.line})` : ''}: ${d.message}`).join('\n');
}
