/**
 * The cluster key: what every server of a cluster on a shared store is
 * given (`--cluster-key FILE`), to keep the cluster's secrets (the CA's
 * private key, later Compose secrets) encrypted in the store, as
 * Kubernetes' encryption at rest and Swarm's autolock do. The store alone
 * (an etcd backup, a snapshot) gives none of them away.
 *
 * The file holds 32 random bytes, hex (64 characters, a newline allowed),
 * mode 0600 (a key readable by others is refused). `baton server
 * --cluster-key FILE --init-cluster-key` writes a new one.
 *
 * A sealed value is `v1:<iv>:<tag>:<ciphertext>` (base64), AES-256-GCM with
 * a fresh 96-bit IV, and the store key it is written under as additional
 * data: a sealed value copied under another key does not open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { BatonError } from '../base/errors.js';

export class ClusterKey {
  private constructor(private readonly key: Buffer) {}

  /** load reads the key file; a missing, unreadable, malformed or world-readable file is an error that says which. */
  static load(file: string): ClusterKey {
    if (!existsSync(file)) throw new BatonError('BATON_ERR_BAD_REQUEST', `cluster key ${file} does not exist (every server of the cluster needs the same one; make it with --init-cluster-key on the first)`);
    const mode = statSync(file).mode & 0o777;
    if (mode & 0o077) throw new BatonError('BATON_ERR_BAD_REQUEST', `cluster key ${file} is readable by others (mode ${mode.toString(8)}): chmod 600 it`);
    const text = readFileSync(file, 'utf8').trim();
    if (!/^[0-9a-f]{64}$/i.test(text)) throw new BatonError('BATON_ERR_BAD_REQUEST', `cluster key ${file} must hold 32 bytes as 64 hex characters`);
    return new ClusterKey(Buffer.from(text, 'hex'));
  }

  /** create writes a new random key file (mode 0600), refusing to replace one. */
  static create(file: string): ClusterKey {
    if (existsSync(file)) throw new BatonError('BATON_ERR_ALREADY_EXISTS', `cluster key ${file} exists already; give it to every server as it is`);
    const key = randomBytes(32);
    writeFileSync(file, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
    return new ClusterKey(key);
  }

  seal(plain: string, storeKey: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(Buffer.from(storeKey));
    const body = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return `v1:${iv.toString('base64')}:${c.getAuthTag().toString('base64')}:${body.toString('base64')}`;
  }

  /** open decrypts; a value sealed with another key, or under another store key, or damaged, is an error. */
  open(sealed: string, storeKey: string): string {
    const [v, iv, tag, body] = sealed.split(':');
    if (v !== 'v1' || !iv || !tag || body === undefined) throw new BatonError('BATON_ERR_BAD_REQUEST', `${storeKey} is not a sealed value`);
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64'));
      d.setAAD(Buffer.from(storeKey));
      d.setAuthTag(Buffer.from(tag, 'base64'));
      return Buffer.concat([d.update(Buffer.from(body, 'base64')), d.final()]).toString('utf8');
    } catch {
      throw new BatonError('BATON_ERR_FORBIDDEN', `${storeKey} does not open with this cluster key: every server of a cluster must be given the same --cluster-key`);
    }
  }
}
