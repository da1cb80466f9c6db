/**
 * ClusterPki is the server's half of the cluster's trust, after Swarm and k3s:
 *
 * - the cluster CA (ECDSA P-256) and the API's serving certificate live in the
 *   data directory, keys mode 0600; the serving certificate is re-issued at
 *   start when an address it must name is missing or it nears expiry;
 * - with a cluster key (servers sharing a store), the CA lives in the store
 *   instead, its private key sealed with that key (clusterKey.ts): the first
 *   server makes it, the others read it, and each issues itself a serving
 *   certificate that names it;
 * - the join secret lives in the store (so a later HA control plane shares
 *   it); a join token is the CA fingerprint plus that secret, and rotating the
 *   secret stops new joins with the old token and leaves joined nodes alone;
 * - join nonces are one-time and short-lived, kept in memory, capped in all
 *   and per source address (JoinNonces);
 * - every node certificate issued is recorded by serial, so `node rm` can
 *   revoke all of a node's certificates; revoked serials are kept until the
 *   certificate would have expired anyway, and each TLS connection is tracked
 *   by its peer serial so revocation closes open streams at once; each
 *   server follows the store, so a secret rotated or a node revoked through
 *   one server holds on every other at once.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostname, networkInterfaces } from 'node:os';
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../base/clock.js';
import { certFingerprint, certInfo, createCA, createClientCert, createServingCert, signCsr, verifyChain, type KeyPairPem } from '../base/pki.js';
import { formatJoinToken, newJoinSecret, verifyJoinProof } from '../base/joinToken.js';
import { BatonError } from '../base/errors.js';
import { JoinNonces, type NonceLimits } from './joinNonces.js';
import { getOrCreate, type Store, type Watch } from '../store/store.js';
import type { ClusterKey } from './clusterKey.js';
import { SERVER_CLIENT_CN } from '../api/tls.js';

const JOIN_SECRET_KEY = '/baton/pki/join/worker';
const ISSUED_PREFIX = '/baton/pki/issued/';
const REVOKED_PREFIX = '/baton/pki/revoked/';
export const CA_KEY = '/baton/pki/ca';
const PKI_PREFIX = '/baton/pki/';
const RENEW_SERVING_BEFORE_MS = 30 * 24 * 3600 * 1000;

export interface IssuedCert {
  serial: string;
  node: string;
  notAfter: string;
  issuedAt: string;
}

export interface PkiOptions {
  /** The host the API listens on; a wildcard means every local address. */
  listenHost: string;
  /** Extra names or addresses for the serving certificate (--tls-san). */
  extraSans?: string[];
  /** Join nonces: lifetime and caps (the server's timings). */
  nonces: NonceLimits;
  /** Servers sharing a store: the CA is kept there, its key sealed with this. */
  clusterKey?: ClusterKey;
}

function isIpLiteral(s: string): boolean {
  return /^[0-9.]+$/.test(s) || s.includes(':');
}

/** servingSans lists what the API's certificate must name: the listen address (every local one for a wildcard), loopback, and the host name. */
export function servingSans(o: PkiOptions): { ips: string[]; dns: string[] } {
  const ips = new Set(['127.0.0.1', '::1']);
  const dns = new Set(['localhost', hostname()]);
  const h = o.listenHost;
  if (h === '0.0.0.0' || h === '::' || h === '') {
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) ips.add(a.address.split('%')[0]!);
  } else if (isIpLiteral(h)) ips.add(h);
  else dns.add(h);
  for (const s of o.extraSans ?? []) (isIpLiteral(s) ? ips : dns).add(s);
  return { ips: [...ips], dns: [...dns].filter((d) => /^[A-Za-z0-9.-]+$/.test(d)) };
}

export class ClusterPki {
  ca!: KeyPairPem;
  caFingerprint = '';
  serving!: KeyPairPem;
  /** The server's client certificate (CN baton-server) for calls to agents' listeners; made anew at each start. */
  client!: KeyPairPem;
  private secret = '';
  private nonces!: JoinNonces;
  private revoked = new Set<string>();
  private sockets = new Map<string, Set<TLSSocket>>();
  private follower?: Watch;

  private constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  static async open(dir: string, store: Store, clock: Clock, o: PkiOptions): Promise<ClusterPki> {
    const p = new ClusterPki(store, clock);
    await p.load(dir, o);
    return p;
  }

  private async load(dir: string, o: PkiOptions): Promise<void> {
    this.nonces = new JoinNonces(this.clock, o.nonces);
    const caCrt = join(dir, 'ca.crt');
    const caKey = join(dir, 'ca.key');
    if (o.clusterKey) {
      this.ca = await this.sharedCa(o.clusterKey);
      writeFileSync(caCrt, this.ca.certPem, { mode: 0o644 });
    } else if (existsSync(caCrt) && existsSync(caKey)) {
      this.ca = { certPem: readFileSync(caCrt, 'utf8'), keyPem: readFileSync(caKey, 'utf8') };
    } else {
      this.ca = await createCA('baton-cluster-ca');
      writeFileSync(caKey, this.ca.keyPem, { mode: 0o600 });
      writeFileSync(caCrt, this.ca.certPem, { mode: 0o644 });
    }
    this.caFingerprint = certFingerprint(this.ca.certPem);

    const srvCrt = join(dir, 'server.crt');
    const srvKey = join(dir, 'server.key');
    const sans = servingSans(o);
    let serving: KeyPairPem | undefined;
    if (existsSync(srvCrt) && existsSync(srvKey)) {
      const s = { certPem: readFileSync(srvCrt, 'utf8'), keyPem: readFileSync(srvKey, 'utf8') };
      const info = certInfo(s.certPem);
      const covers = sans.ips.every((ip) => info.sans.ips.includes(ip)) && sans.dns.every((d) => info.sans.dns.includes(d));
      const fresh = info.notAfter.getTime() - this.clock.now() > RENEW_SERVING_BEFORE_MS;
      if (covers && fresh && verifyChain(s.certPem, this.ca.certPem).ok) serving = s;
    }
    if (!serving) {
      serving = await createServingCert(this.ca, sans);
      writeFileSync(srvKey, serving.keyPem, { mode: 0o600 });
      writeFileSync(srvCrt, serving.certPem, { mode: 0o644 });
    }
    this.serving = serving;
    this.client = await createClientCert(this.ca, SERVER_CLIENT_CN);

    const kv = await this.store.get(JOIN_SECRET_KEY);
    if (kv) this.secret = JSON.parse(kv.value).secret;
    else await this.rotate();

    const revoked = await this.store.range(REVOKED_PREFIX);
    for (const item of revoked.kvs) this.revoked.add(item.key.slice(REVOKED_PREFIX.length));
    this.follow(revoked.revision);
  }

  /** sealedCa is the CA's record in a shared store: the certificate, and the key sealed with the cluster key. */
  static sealedCa(ca: KeyPairPem, key: ClusterKey): string {
    return JSON.stringify({ certPem: ca.certPem, keySealed: key.seal(ca.keyPem, CA_KEY) });
  }

  /** sharedCa reads the CA from the store, or makes it there if no server has (the first to write wins; the others read its). */
  private async sharedCa(key: ClusterKey): Promise<KeyPairPem> {
    const value = await getOrCreate(this.store, CA_KEY, async () => {
      return ClusterPki.sealedCa(await createCA('baton-cluster-ca'), key);
    });
    const v = JSON.parse(value) as { certPem: string; keySealed: string };
    return { certPem: v.certPem, keyPem: key.open(v.keySealed, CA_KEY) };
  }

  /**
   * follow applies what other servers write to the store: a rotated join
   * secret, and revocations (whose connections here close at once). A
   * watch that breaks (compaction) reads the state again and follows on.
   */
  private follow(after: number): void {
    this.follower = this.store.watch(PKI_PREFIX, after, {
      onBatch: (b) => {
        for (const e of b.events) {
          if (e.type !== 'put') continue;
          if (e.kv.key === JOIN_SECRET_KEY) {
            try {
              this.secret = (JSON.parse(e.kv.value) as { secret: string }).secret;
            } catch {
              /* a damaged record: keep the secret we have */
            }
          } else if (e.kv.key.startsWith(REVOKED_PREFIX)) this.closeRevoked(e.kv.key.slice(REVOKED_PREFIX.length));
        }
        after = b.revision;
      },
      onError: () => {
        if (this.closed) return;
        void (async () => {
          try {
            const kv = await this.store.get(JOIN_SECRET_KEY);
            if (kv) this.secret = (JSON.parse(kv.value) as { secret: string }).secret;
            const r = await this.store.range(REVOKED_PREFIX);
            for (const item of r.kvs) this.closeRevoked(item.key.slice(REVOKED_PREFIX.length));
            if (!this.closed) this.follow(r.revision);
          } catch {
            if (!this.closed) setTimeout(() => this.follow(after), 1000).unref();
          }
        })();
      },
    });
  }

  private closed = false;

  /** close stops following the store. */
  close(): void {
    this.closed = true;
    this.follower?.close();
  }

  private closeRevoked(serial: string): void {
    this.revoked.add(serial);
    for (const sock of this.sockets.get(serial) ?? []) sock.destroy();
    this.sockets.delete(serial);
  }

  /** joinToken is the worker join token: the CA fingerprint plus the current secret. */
  joinToken(): string {
    return formatJoinToken(this.caFingerprint, this.secret);
  }

  /** rotate makes a new join secret; the old token stops working for new joins at once. */
  async rotate(): Promise<string> {
    const secret = newJoinSecret();
    await this.store.txn([], [{ type: 'put', key: JOIN_SECRET_KEY, value: JSON.stringify({ secret, createdAt: new Date(this.clock.now()).toISOString() }) }]);
    this.secret = secret;
    return this.joinToken();
  }

  /** newNonce hands `address` (an addressKey) a one-time challenge for a join, within the caps of the pool. */
  newNonce(address: string): { nonce: string; expiresAt: string } {
    return this.nonces.issue(address);
  }

  /** takeNonce consumes a nonce: each is accepted once, and only before it expires. */
  takeNonce(nonce: string): 'ok' | 'unknown' | 'expired' {
    return this.nonces.take(nonce);
  }

  /** The join nonce pool's sizes, for tests. */
  get nonceCount(): JoinNonces['size'] {
    return this.nonces.size;
  }

  verifyProof(nonce: string, csrPem: string, proof: string): boolean {
    return verifyJoinProof(this.secret, nonce, csrPem, proof);
  }

  /**
   * issue signs a node certificate for `node` from its CSR: usable as a client
   * certificate to the API and as the serving certificate of the node's own
   * listener (its SAN is the node's address). The serial is recorded.
   */
  async issue(node: string, csrPem: string, address: string, ttlMs: number): Promise<{ certPem: string; serial: string; notAfter: Date }> {
    const ips = isIpLiteral(address) ? [address] : [];
    // signCsr parses the request and verifies its signature once (each costs about as much as the signing itself);
    // its refusal says what is wrong (not a CSR, a signature that does not verify, a key that is not P-256).
    const r = await signCsr(this.ca, csrPem, { commonName: node, usage: 'both', ips, dns: ips.length ? [] : [address], days: ttlMs / 86_400_000 }).catch((e) => {
      throw new BatonError('BATON_ERR_BAD_REQUEST', `csr refused: ${(e as Error).message}`);
    });
    const rec: IssuedCert = { serial: r.serial, node, notAfter: r.notAfter.toISOString(), issuedAt: new Date(this.clock.now()).toISOString() };
    await this.store.txn([], [{ type: 'put', key: ISSUED_PREFIX + r.serial, value: JSON.stringify(rec) }]);
    return r;
  }

  isRevoked(serial: string): boolean {
    return this.revoked.has(serial.toLowerCase());
  }

  /** revokeNode revokes every certificate issued to `node` and closes its open connections; returns the serials. */
  async revokeNode(node: string): Promise<string[]> {
    const issued = (await this.store.range(ISSUED_PREFIX)).kvs.map((kv) => JSON.parse(kv.value) as IssuedCert).filter((c) => c.node === node);
    const serials = issued.map((c) => c.serial).filter((s) => !this.revoked.has(s));
    for (let i = 0; i < issued.length; i += 64) {
      const batch = issued.slice(i, i + 64);
      await this.store.txn(
        [],
        batch.flatMap((c) => [
          { type: 'put' as const, key: REVOKED_PREFIX + c.serial, value: JSON.stringify({ ...c, revokedAt: new Date(this.clock.now()).toISOString() }) },
          { type: 'delete' as const, key: ISSUED_PREFIX + c.serial },
        ]),
      );
    }
    for (const s of issued.map((c) => c.serial)) this.closeRevoked(s);
    return serials;
  }

  /** track remembers a TLS connection by the serial of its client certificate, so revocation can close it. */
  track(sock: TLSSocket): void {
    const { serial } = peerIdentity(sock);
    // A revoked certificate still connects: its requests get a 401 that says why.
    if (!serial || this.revoked.has(serial)) return;
    let set = this.sockets.get(serial);
    if (!set) this.sockets.set(serial, (set = new Set()));
    set.add(sock);
    sock.once('close', () => {
      set!.delete(sock);
      if (set!.size === 0 && this.sockets.get(serial) === set) this.sockets.delete(serial);
    });
  }

  /** prune forgets issued and revoked records of certificates that have expired anyway. */
  async prune(): Promise<void> {
    const now = this.clock.now();
    for (const prefix of [ISSUED_PREFIX, REVOKED_PREFIX]) {
      const dead = (await this.store.range(prefix)).kvs.filter((kv) => Date.parse((JSON.parse(kv.value) as IssuedCert).notAfter) < now);
      for (let i = 0; i < dead.length; i += 128) await this.store.txn([], dead.slice(i, i + 128).map((kv) => ({ type: 'delete' as const, key: kv.key })));
      if (prefix === REVOKED_PREFIX) for (const kv of dead) this.revoked.delete(kv.key.slice(REVOKED_PREFIX.length));
    }
    this.nonces.expire(now);
  }
}

const identities = new WeakMap<TLSSocket, { serial?: string; cn: string; address?: string }>();

/**
 * peerIdentity is the client certificate on a TLS connection (lowercase
 * serial and CN; no serial when none was presented), parsed once per
 * connection rather than on every request of a keep-alive connection.
 */
export function peerIdentity(sock: TLSSocket): { serial?: string; cn: string; address?: string } {
  let id = identities.get(sock);
  if (!id) {
    const c = typeof sock.getPeerCertificate === 'function' ? sock.getPeerCertificate() : undefined;
    const serial = c && c.serialNumber ? c.serialNumber.toLowerCase() : undefined;
    // A node certificate names the one IP address the node joined with (issue() puts it in the SAN).
    const ip = serial ? /(?:^|, )IP Address:([0-9A-Fa-f.:]+)(?:,|$)/.exec(String(c!.subjectaltname ?? '')) : null;
    id = { serial, cn: serial ? String(c!.subject?.CN ?? '') : '', ...(ip ? { address: ip[1]! } : {}) };
    identities.set(sock, id);
  }
  return id;
}
