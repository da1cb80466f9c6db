/**
 * CronController runs cron jobs, as Kubernetes' CronJob controller does: a
 * service with a `schedule` is a template; at each firing it makes a run, a
 * job service `<name>-<unix time>` owned by the template (the service
 * controller runs it to completion), by the concurrency policy (allow
 * another run, forbid it while one is active, or replace the active one),
 * and keeps the newest successful and failed runs up to their history
 * limits. Times come from the injected clock; firings missed while the
 * server was down are caught up once (the latest), never one by one.
 */
import { Cron } from 'croner';
import { WorkQueue } from '../../base/workqueue.js';
import { serviceKind } from '../../api/kinds.js';
import type { CronStatus, Service } from '../../api/types.js';
import { isStatusOnly } from '../watchCache.js';
import { queueOptions, recordEvent, type Controller, type ControllerContext } from './context.js';

/** The label every run carries: the template's name. */
export const CRON_LABEL = 'baton.cron';

/** Firings looked at when catching up (a per-second schedule down for a day would be 86,400). */
const MAX_CATCH_UP = 1000;

export class CronController implements Controller {
  readonly name = 'cron';
  private queue: WorkQueue;
  private unsubs: (() => void)[] = [];

  constructor(private readonly ctx: ControllerContext) {
    this.queue = new WorkQueue((k) => this.reconcile(k), queueOptions(ctx, 'cron', { initialMs: 200, maxMs: 10_000 }));
    ctx.metrics?.queue('cron', this.queue);
  }

  start(): void {
    this.queue.start();
    this.unsubs.push(
      this.ctx.services.onDidChange((e) => {
        const s = e.object as unknown as Service;
        if (s.spec.schedule && (e.type === 'DELETED' || !isStatusOnly(e))) this.queue.add(s.metadata.name);
        // A run that finished (or went): its template's active list and history change.
        const parent = s.metadata.labels?.[CRON_LABEL];
        if (parent) this.queue.add(parent);
      }),
    );
    for (const o of this.ctx.services.objects.values()) {
      const s = o as unknown as Service;
      if (s.spec.schedule) this.queue.add(s.metadata.name);
      const parent = s.metadata.labels?.[CRON_LABEL];
      if (parent) this.queue.add(parent);
    }
  }

  stop(): void {
    for (const u of this.unsubs.splice(0)) u();
    this.queue.stop();
  }

  idle(): Promise<void> {
    return this.queue.idle();
  }

  private runsOf(name: string, uid?: string): Service[] {
    const out: Service[] = [];
    for (const o of this.ctx.services.objects.values()) {
      const s = o as unknown as Service;
      if (s.metadata.labels?.[CRON_LABEL] === name && (!uid || s.metadata.ownerRefs?.some((r) => r.uid === uid))) out.push(s);
    }
    return out.sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp) || a.metadata.name.localeCompare(b.metadata.name));
  }

  async reconcile(name: string): Promise<void> {
    const { ctx } = this;
    const svc = ctx.services.objects.get(name) as unknown as Service | undefined;
    if (!svc || !svc.spec.schedule) {
      // The template is gone (or no longer scheduled): its runs go with it.
      for (const run of this.runsOf(name)) if (!svc || run.metadata.ownerRefs?.some((r) => r.uid === svc.metadata.uid)) await ctx.registry.delete(serviceKind, run.metadata.name).catch(() => undefined);
      return;
    }
    const sched = svc.spec.schedule;
    const cron = new Cron(sched.cron, { paused: true, ...(sched.timeZone ? { timezone: sched.timeZone } : {}) });
    const now = ctx.clock.now();
    const runs = this.runsOf(name, svc.metadata.uid);
    const active = runs.filter((r) => !r.status?.job || r.status.job.state === 'running');
    const last = Date.parse(svc.status?.cron?.lastScheduleTime ?? svc.metadata.creationTimestamp);
    // The latest firing due by now (caught up once), if any.
    let due: number | undefined;
    let next = cron.nextRun(new Date(last))?.getTime();
    for (let i = 0; next !== undefined && next <= now && i < MAX_CATCH_UP; i++) {
      due = next;
      next = cron.nextRun(new Date(next))?.getTime();
    }
    let lastScheduled = svc.status?.cron?.lastScheduleTime;
    if (due !== undefined) {
      lastScheduled = new Date(due).toISOString();
      if (sched.concurrency === 'forbid' && active.length > 0) {
        recordEvent(ctx, { type: 'Normal', reason: 'RunSkipped', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/cron', message: `${name}: skipped the run due at ${lastScheduled}: ${active.map((r) => r.metadata.name).join(', ')} still running (concurrency: forbid)` });
      } else {
        if (sched.concurrency === 'replace') {
          for (const r of active) {
            await ctx.registry.delete(serviceKind, r.metadata.name).catch(() => undefined);
            active.splice(active.indexOf(r), 1);
          }
        }
        const runName = `${name.slice(0, 52)}-${Math.floor(due / 1000)}`;
        const { schedule: _, ...spec } = svc.spec;
        try {
          await ctx.registry.create(serviceKind, {
            metadata: { name: runName, labels: { ...svc.metadata.labels, [CRON_LABEL]: name }, ownerRefs: [{ kind: 'Service', name, uid: svc.metadata.uid }] },
            spec,
            status: {},
          });
          recordEvent(ctx, { type: 'Normal', reason: 'RunStarted', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/cron', message: `${name}: started run ${runName} (due at ${lastScheduled})` });
        } catch (e) {
          const code = (e as { code?: string }).code;
          // Made already (a retried reconcile): nothing to do. Over its stack's quota: this run is skipped, and says why.
          if (code === 'BATON_ERR_QUOTA_EXCEEDED') {
            recordEvent(ctx, { type: 'Warning', reason: 'RunRefused', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/cron', message: `${name}: did not start the run due at ${lastScheduled}: ${(e as Error).message}` });
          } else if (code !== 'BATON_ERR_ALREADY_EXISTS') throw e;
        }
      }
    }
    // History: keep the newest successful and failed runs up to their limits.
    const finished = (state: 'complete' | 'failed') => runs.filter((r) => r.status?.job?.state === state);
    for (const [list, keep] of [[finished('complete'), sched.successfulHistory], [finished('failed'), sched.failedHistory]] as const) {
      for (const old of list.slice(0, Math.max(0, list.length - keep))) await ctx.registry.delete(serviceKind, old.metadata.name).catch(() => undefined);
    }
    const status: CronStatus = {
      ...(lastScheduled ? { lastScheduleTime: lastScheduled } : {}),
      ...(next !== undefined ? { nextScheduleTime: new Date(next).toISOString() } : {}),
      active: this.runsOf(name, svc.metadata.uid).filter((r) => !r.status?.job || r.status.job.state === 'running').map((r) => r.metadata.name),
    };
    if (JSON.stringify(status) !== JSON.stringify(svc.status?.cron ?? {})) {
      const [r] = await ctx.registry.updateStatus(serviceKind, [{ name, uid: svc.metadata.uid, status: { ...svc.status, observedGeneration: svc.status?.observedGeneration ?? 0, desired: 0, running: 0, ready: 0, cron: status } }]);
      if (r && !r.ok && r.error.code !== 'BATON_ERR_NOT_FOUND') throw r.error;
    }
    if (next !== undefined) this.queue.addAfter(name, Math.max(0, next - ctx.clock.now()));
  }
}
