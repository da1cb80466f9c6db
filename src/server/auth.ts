/**
 * Tokens authenticates API callers. Tokens are stored hashed (SHA-256) with a
 * role, so RBAC later only adds rules; a leaked store never leaks a token.
 * Format: `baton.<id>.<secret>`; the id finds the record, the hash checks it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store } from '../store/store.js';

export type Role = 'admin' | 'agent';

export interface TokenRecord {
  id: string;
  hash: string;
  role: Role;
  description: string;
  createdAt: string;
}

const PREFIX = '/baton/tokens/';

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export class Tokens {
  private cache = new Map<string, TokenRecord | null>();

  constructor(private readonly store: Store) {}

  /** create makes a new token and returns it in clear text: the only time it exists unhashed. */
  async create(role: Role, description: string): Promise<string> {
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const token = `baton.${id}.${secret}`;
    const rec: TokenRecord = { id, hash: sha256(token), role, description, createdAt: new Date().toISOString() };
    await this.store.txn([], [{ type: 'put', key: PREFIX + id, value: JSON.stringify(rec) }]);
    this.cache.delete(id);
    return token;
  }

  /** verify returns the token's role, or undefined for an unknown or malformed token. */
  async verify(token: string): Promise<Role | undefined> {
    const m = /^baton\.([0-9a-f]{12})\.[A-Za-z0-9_-]+$/.exec(token);
    if (!m) return undefined;
    const id = m[1]!;
    let rec = this.cache.get(id);
    if (rec === undefined) {
      const kv = await this.store.get(PREFIX + id);
      rec = kv ? (JSON.parse(kv.value) as TokenRecord) : null;
      this.cache.set(id, rec);
    }
    if (!rec) return undefined;
    const a = Buffer.from(rec.hash, 'hex');
    const b = Buffer.from(sha256(token), 'hex');
    return a.length === b.length && timingSafeEqual(a, b) ? rec.role : undefined;
  }
}
