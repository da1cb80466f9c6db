/**
 * AutoscaleController sets the replicas of every service with
 * `x-baton.autoscale`, every `autoscaleSyncMs` (2 s; Kubernetes' HPA syncs
 * every 15 s), from what agents report (CPU and memory per task, the
 * routing mesh's requests and open connections) through the pure
 * arithmetic of ../autoscale.ts. Each change is an Event that carries its
 * inputs. With `min: 0` a service with no traffic for its scale-down window
 * goes to zero tasks; `activate` (the first connection an agent's mesh
 * holds for it) brings it back at once.
 */
import { serviceKind } from '../../api/kinds.js';
import { BatonError } from '../../base/errors.js';
import { isJob, isTaskReady, type AutoscaleView, type Service, type Task } from '../../api/types.js';
import { recommend, stabilize, type Recommendation } from '../autoscale.js';
import type { UsageStore } from '../usage.js';
import type { Quotas } from '../quotas.js';
import type { AnyObject } from '../registry.js';
import { indexTasks, recordEvent, TASKS_BY_SERVICE, type Controller, type ControllerContext } from './context.js';


export class AutoscaleController implements Controller {
  readonly name = 'autoscale';
  private stopTimer?: () => void;
  private running = false;
  private readonly history = new Map<string, Recommendation[]>();
  readonly views = new Map<string, AutoscaleView>();
  /** Services started from zero, and when their first connection waited: the cold start ends when a task is ready. */
  private readonly coldSince = new Map<string, number>();
  private unsubTasks?: () => void;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly usage: UsageStore,
    /** Stacks' quotas: the autoscaler stops at them (and says so) rather than being refused. */
    private readonly quotas?: Quotas,
  ) {
    indexTasks(ctx.tasks);
  }

  start(): void {
    this.running = true;
    this.unsubTasks = this.ctx.tasks.onDidChange((e) => {
      const t = e.object as unknown as Task;
      const since = this.coldSince.get(t.spec.serviceName);
      if (since === undefined || e.type === 'DELETED' || !isTaskReady(t)) return;
      this.coldSince.delete(t.spec.serviceName);
      const ms = this.ctx.clock.now() - since;
      const v = this.views.get(t.spec.serviceName);
      if (v) this.views.set(t.spec.serviceName, { ...v, lastColdStartMs: ms });
      recordEvent(this.ctx, { type: 'Normal', reason: 'ColdStart', kind: 'Service', name: t.spec.serviceName, service: t.spec.serviceName, source: 'controller/autoscale', message: `${t.spec.serviceName}: ${t.metadata.name} ready on ${t.spec.nodeName} ${ms} ms after the first connection waited for it` });
    });
    const tick = () => {
      if (!this.running) return;
      void this.sync()
        .catch((e) => this.ctx.log.warn({ controller: 'autoscale', err: String(e) }, 'autoscale pass failed; will retry'))
        .finally(() => {
          if (this.running) this.stopTimer = this.ctx.clock.setTimeout(tick, this.ctx.timings.autoscaleSyncMs);
        });
    };
    this.stopTimer = this.ctx.clock.setTimeout(tick, this.ctx.timings.autoscaleSyncMs);
  }

  stop(): void {
    this.running = false;
    this.stopTimer?.();
    this.unsubTasks?.();
  }

  /** sync makes one decision for every autoscaled service. */
  async sync(): Promise<void> {
    const now = this.ctx.clock.now();
    const seen = new Set<string>();
    for (const o of this.ctx.services.objects.values()) {
      const svc = o as unknown as Service;
      const a = svc.spec.autoscale;
      if (!a || isJob(svc.spec) || svc.spec.mode !== 'replicated') continue;
      const name = svc.metadata.name;
      seen.add(name);
      const current = svc.spec.replicas;
      const metrics = this.usage.serviceNow(name);
      const rec = recommend(a, svc.spec.resources, current, metrics);
      // Scale to zero: no traffic at all (the CPU of idle tasks never asks for zero by itself).
      if (a.min === 0 && (a.rps !== undefined || a.concurrency !== undefined) && metrics.rps === 0 && metrics.concurrency === 0) {
        rec.desired = 0;
        rec.why.push('no requests');
      }
      const window = Math.max(a.scaleUp.stabilizationMs, a.scaleDown.stabilizationMs);
      const hist = (this.history.get(name) ?? []).filter((r) => r.at >= now - window);
      hist.push({ at: now, desired: rec.desired });
      this.history.set(name, hist);
      let next = stabilize(a, current, hist, now);
      if (next > current && this.quotas && svc.spec.stack) {
        const fit = await this.quotas.maxReplicas(svc);
        if (fit.replicas < next) {
          next = Math.max(current, fit.replicas);
          rec.why.push(`held at ${next} by the quota of stack ${svc.spec.stack} (${fit.limit})`);
        }
      }
      // Node capacity is respected, not hidden: tasks the scheduler could not place are part of the explanation.
      const pending = (this.ctx.tasks.byIndex(TASKS_BY_SERVICE, name) as unknown as Task[]).filter((t) => t.spec.desiredState === 'running' && t.status.state === 'pending' && t.status.pendingReason);
      if (pending.length) rec.why.push(`${pending.length} task(s) pending: ${pending[0]!.status.pendingReason}`);
      const prev = this.views.get(name);
      this.views.set(name, {
        service: name,
        min: a.min,
        max: a.max,
        replicas: next,
        recommended: rec.desired,
        why: rec.why,
        metrics,
        targets: { cpu: a.cpu, memory: a.memory, rps: a.rps, concurrency: a.concurrency },
        ...(prev?.lastScaleTime ? { lastScaleTime: prev.lastScaleTime } : {}),
        ...(prev?.lastColdStartMs !== undefined ? { lastColdStartMs: prev.lastColdStartMs } : {}),
      });
      if (next !== current) await this.setReplicas(svc, next, `${rec.why.join('; ')} → ${next} replica(s) (was ${current})`);
    }
    for (const k of this.views.keys()) if (!seen.has(k)) this.views.delete(k);
    for (const k of this.history.keys()) if (!seen.has(k)) this.history.delete(k);
  }

  /** activate starts a service scaled to zero at once: a connection is waiting for it. */
  async activate(name: string): Promise<boolean> {
    const svc = this.ctx.services.objects.get(name) as unknown as Service | undefined;
    const a = svc?.spec.autoscale;
    if (!svc || !a || svc.spec.replicas > 0) return false;
    const to = Math.max(1, a.min);
    this.coldSince.set(name, this.ctx.clock.now());
    // The waiting connection counts as a recommendation, so the scale-down window keeps the task a while.
    this.history.set(name, [...(this.history.get(name) ?? []), { at: this.ctx.clock.now(), desired: to }]);
    await this.setReplicas(svc, to, `a connection is waiting for ${name} → ${to} replica(s) (was 0)`);
    return true;
  }

  private async setReplicas(svc: Service, replicas: number, message: string): Promise<void> {
    const name = svc.metadata.name;
    let out: (Service & AnyObject) | undefined;
    try {
      out = await this.ctx.registry.mutate<Service & AnyObject>(serviceKind, name, (cur) => {
        if (cur.metadata.uid !== svc.metadata.uid || !cur.spec.autoscale || cur.spec.replicas === replicas) return undefined;
        cur.spec.replicas = replicas;
        cur.metadata.generation++;
        return cur;
      });
    } catch (e) {
      // Another service of the stack took the headroom since this pass looked: the next pass stops at what is left.
      if (!(e instanceof BatonError) || e.code !== 'BATON_ERR_QUOTA_EXCEEDED') throw e;
      recordEvent(this.ctx, { type: 'Warning', reason: 'QuotaExceeded', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/autoscale', message: `${name}: could not scale to ${replicas}: ${e.message}` });
      return;
    }
    if (!out) return;
    const at = new Date(this.ctx.clock.now()).toISOString();
    const v = this.views.get(name);
    if (v) this.views.set(name, { ...v, replicas, lastScaleTime: at });
    recordEvent(this.ctx, { type: 'Normal', reason: replicas > svc.spec.replicas ? 'ScaledUp' : 'ScaledDown', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/autoscale', message: `${name}: ${message}` });
  }
}
