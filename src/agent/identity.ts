/**
 * NodeIdentity is the node's standing in its cluster: the credentials in its
 * data directory (a certificate the server signed at join), the API client
 * that presents them, joining when there are none (or they expired, or were
 * revoked while the agent was away), and renewal at two thirds of their life.
 */
import type { Logger } from 'pino';
import { ApiClient } from '../api/client.js';
import { tlsTransport, withTransport } from '../api/tls.js';
import { backoffDelay } from '../base/backoff.js';
import { sleep, type Clock } from '../base/clock.js';
import { BatonError } from '../base/errors.js';
import { certValidity } from '../base/certs.js';
import { credentialState, joinCluster, localDialAddress, loadCredentials, renewCertificate, saveCredentials, type NodeCredentials } from './join.js';

/** isRevoked: the server refused this node's certificate as revoked (it says so in the error details). */
export function isRevoked(e: unknown): boolean {
  const err = e as BatonError;
  return err?.code === 'BATON_ERR_UNAUTHORIZED' && !!err.details?.some((d) => d.path === 'certificate' && d.message === 'revoked');
}

export interface IdentityOptions {
  server?: string;
  joinToken?: string;
  name: string;
  address: string;
  dataDir: string;
}

export class NodeIdentity {
  client!: ApiClient;
  creds!: NodeCredentials;
  private closeTransport?: () => Promise<void>;

  constructor(
    private readonly opts: IdentityOptions,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly signal: AbortSignal,
    /** Told of every new set of credentials (the agent's listener serves with them; the state takes the cluster id). */
    private readonly onCredentials: (creds: NodeCredentials) => void,
  ) {}

  /** ensure loads this node's certificate, or joins with the token when there is none (or it expired). */
  async ensure(): Promise<void> {
    const { opts } = this;
    let creds = loadCredentials(opts.dataDir);
    if (creds && creds.name !== opts.name) {
      throw new BatonError('BATON_ERR_CONFLICT', `data directory ${opts.dataDir} holds node ${creds.name}'s identity, not ${opts.name}'s; use --name ${creds.name} or another --data-dir`);
    }
    if (creds && opts.server && opts.server.replace(/\/+$/, '') !== creds.server) creds = { ...creds, server: opts.server.replace(/\/+$/, '') };
    const state = creds ? credentialState(creds, new Date(this.clock.now())) : undefined;
    if (!creds || state === 'expired') {
      if (!opts.server || !opts.joinToken) {
        throw new BatonError(
          'BATON_ERR_BAD_REQUEST',
          creds
            ? `this node's certificate has expired (the agent was away longer than its lifetime); join again: baton agent --join ${creds.server} --token TOKEN (get one with baton join-token worker)`
            : 'this node has not joined a cluster yet: pass --join https://SERVER:7400 --token TOKEN (get one with baton join-token worker)',
        );
      }
      creds = await this.joinWithRetry(opts.server, opts.joinToken);
      saveCredentials(opts.dataDir, creds);
      this.log.info({ server: creds.server, clusterId: creds.clusterId }, 'joined the cluster');
    }
    this.use(creds);
  }

  /**
   * updateServers takes the live servers a heartbeat reply lists: the client
   * fails over among them, and the list is saved so a restart knows them too.
   * The URLs this agent was started with stay first (a name or balancer the
   * servers do not know of themselves).
   */
  updateServers(urls: string[]): void {
    const configured = (this.opts.server ?? '').split(',').map((u) => u.trim().replace(/\/+$/, '')).filter(Boolean);
    const next = [...new Set([...configured, ...urls])];
    if (next.join(',') === this.client.servers.join(',')) return;
    this.client.setServers(next);
    this.creds = { ...this.creds, server: next.join(',') };
    saveCredentials(this.opts.dataDir, this.creds);
    this.log.info({ servers: next }, 'servers of the cluster changed');
  }

  /** rejoin joins afresh after this node was removed while away, if the agent was given a token; else it says how. */
  async rejoin(): Promise<void> {
    const { opts } = this;
    if (!opts.server || !opts.joinToken) {
      throw new BatonError('BATON_ERR_UNAUTHORIZED', `this node's certificate was revoked (baton node rm ${opts.name}); to join again, start the agent with --join URL --token TOKEN`);
    }
    const creds = await joinCluster({ server: opts.server, token: opts.joinToken, name: opts.name, address: opts.address });
    saveCredentials(opts.dataDir, creds);
    this.use(creds);
    this.log.info({ server: creds.server }, 'joined the cluster again after this node was removed');
  }

  /**
   * joinWithRetry joins, waiting and trying again while the server is away
   * or limits joins from this address (many nodes behind one address joining
   * at once); any other refusal (a wrong token, a held name) is final.
   */
  private async joinWithRetry(server: string, token: string): Promise<NodeCredentials> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await joinCluster({ server, token, name: this.opts.name, address: this.opts.address });
      } catch (e) {
        const code = (e as BatonError).code;
        if (code !== 'BATON_ERR_RATE_LIMITED' && code !== 'BATON_ERR_UNAVAILABLE') throw e;
        if (attempt === 1 || attempt % 10 === 0) this.log.warn({ err: (e as Error).message }, 'cannot join yet; retrying');
        await sleep(backoffDelay({ initialMs: 500, maxMs: 10_000 }, attempt), this.signal);
        if (this.signal.aborted) throw e;
      }
    }
  }

  private use(creds: NodeCredentials): void {
    const t = tlsTransport({ caPem: creds.caPem, certPem: creds.certPem, keyPem: creds.keyPem, localAddress: localDialAddress(this.opts.address) });
    const old = this.closeTransport;
    this.creds = creds;
    if (this.client) this.client.setTransport(t);
    else this.client = new ApiClient(withTransport({ server: creds.server, timeoutMs: 10_000 }, t));
    this.closeTransport = t.close;
    this.onCredentials(creds);
    // Requests in flight (a held watch) finish on the old connection; close() waits for them.
    void old?.().catch(() => {});
  }

  /** renewLoop renews the node certificate at two thirds of its life; a refusal goes to onError (revocation ends the agent). */
  async renewLoop(everyMs: number, onError: (e: unknown) => void): Promise<void> {
    while (!this.signal.aborted) {
      await sleep(everyMs, this.signal);
      if (this.signal.aborted) return;
      if (credentialState(this.creds, new Date(this.clock.now())) !== 'renew') continue;
      try {
        const next = await renewCertificate(this.client, this.creds);
        saveCredentials(this.opts.dataDir, next);
        this.use(next);
        this.log.info({ notAfter: certValidity(next.certPem).notAfter.toISOString() }, 'renewed the node certificate');
      } catch (e) {
        onError(e);
        this.log.warn({ err: String(e) }, 'certificate renewal failed; will retry');
      }
    }
  }

  /** close lets the client's connections go (after requests in flight). */
  close(): void {
    void this.closeTransport?.().catch(() => {});
  }
}
