/**
 * Informer keeps a local copy of a filtered set of objects through the API:
 * list, then watch from the list's revision; on a broken stream, re-watch
 * from the last revision seen; on 410 Gone, list again. Handlers receive
 * (type, object) and must treat the object as read-only. `synced` becomes true
 * after the first successful list, which is what lets an agent decide it may
 * clean up (it never removes anything before it has heard from the server).
 */
import { backoffDelay } from '../base/backoff.js';
import { sleep } from '../base/clock.js';
import type { ApiClient } from './client.js';
import type { KindInfo } from './kinds.js';

export interface InformerOptions {
  fieldSelector?: Record<string, string>;
  labelSelector?: Record<string, string>;
  /** Leave out changes that touch only status (the watcher wrote them itself): objects keep the status they were listed with. */
  ignoreStatusUpdates?: boolean;
  /** Called once per (re)list with the complete set; objects missing from it were deleted. */
  onSync?: (objects: Map<string, any>) => void;
  onEvent: (type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: any) => void;
  onError?: (err: Error) => void;
  retry?: { initialMs: number; maxMs: number };
}

export class Informer {
  readonly objects = new Map<string, any>();
  synced = false;
  private abort = new AbortController();
  private stopped = false;
  private done?: Promise<void>;
  private rv?: string;
  /** The store epoch of rv (the list's): a watch from it on a store of another epoch is told 410 and lists again. */
  private epoch?: string;

  constructor(
    private readonly client: ApiClient,
    private readonly kind: KindInfo,
    private readonly opts: InformerOptions,
  ) {}

  /**
   * revision is the store revision the local copy reflects: the list's, then
   * each event's or bookmark's; inside onEvent and onSync it is the revision
   * of what is being delivered (a list's own revision for the deletions it
   * reveals).
   */
  get revision(): string | undefined {
    return this.rv;
  }

  /** Ends the watch in progress only (the loop watches again from the last revision). */
  private rewatch?: AbortController;
  private unsubscribe?: () => void;

  start(): void {
    // When the client moves to another server, a watch held on the old one may hang (a stopped server keeps the
    // connection open and sends nothing): watch again, through the new one, from the last revision.
    this.unsubscribe = this.client.onDidChangeServer(() => this.rewatch?.abort());
    this.done = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.abort.abort();
    await this.done?.catch(() => {});
  }

  private async run(): Promise<void> {
    let failures = 0;
    this.rv = undefined;
    while (!this.stopped) {
      this.rewatch = undefined;
      try {
        if (this.rv === undefined) {
          const list = await this.client.list<any>(this.kind, { fieldSelector: this.opts.fieldSelector, labelSelector: this.opts.labelSelector });
          const seen = new Map<string, any>();
          for (const o of list.items) seen.set(o.metadata.name, o);
          this.rv = list.metadata.resourceVersion;
          this.epoch = list.metadata.storeEpoch;
          for (const [name, old] of this.objects) if (!seen.has(name)) this.opts.onEvent('DELETED', old);
          this.objects.clear();
          for (const [n, o] of seen) this.objects.set(n, o);
          this.synced = true;
          this.opts.onSync?.(this.objects);
        }
        const rewatch = (this.rewatch = new AbortController());
        const signal = AbortSignal.any([this.abort.signal, rewatch.signal]);
        for await (const ev of this.client.watch<any>(this.kind, { resourceVersion: this.rv, storeEpoch: this.epoch, fieldSelector: this.opts.fieldSelector, labelSelector: this.opts.labelSelector, ignoreStatusUpdates: this.opts.ignoreStatusUpdates, signal })) {
          failures = 0;
          if (ev.type === 'ERROR') {
            if ((ev.object as { code?: number }).code === 410) this.rv = undefined;
            break;
          }
          this.rv = ev.object.metadata.resourceVersion;
          if (ev.type === 'BOOKMARK') continue;
          if (ev.type === 'DELETED') this.objects.delete(ev.object.metadata.name);
          else this.objects.set(ev.object.metadata.name, ev.object);
          this.opts.onEvent(ev.type, ev.object);
        }
      } catch (e) {
        if (this.stopped) return;
        // Ended on purpose (the client moved to another server): watch again at once.
        if (this.rewatch?.signal.aborted) continue;
        const err = e as Error & { code?: string };
        if (err.code === 'BATON_ERR_GONE') this.rv = undefined;
        this.opts.onError?.(err);
        failures++;
      }
      if (!this.stopped) await sleep(backoffDelay(this.opts.retry ?? { initialMs: 200, maxMs: 5000 }, Math.max(1, failures)), this.abort.signal);
    }
  }
}
