/**
 * Quotas per stack (`baton quota set STACK --cpus --memory --tasks`), kept in
 * the store at /baton/quotas/<stack> so every server of an HA cluster
 * enforces the same ones.
 *
 * A quota is charged in the transaction of the write it limits: the
 * registry asks `guard` for the compares and puts to add to every service
 * write (create, update, scale, the autoscaler, a rollback, a cron job's
 * run) and apply adds them to its own transaction. A write that changes
 * what a stack asks for reads the stack's quota and services, refuses the
 * write if a limit would be passed (naming the quota and what is left),
 * else rewrites the quota record (its new charge) under a compare on its
 * revision. Two concurrent writes to one stack therefore cannot both pass
 * on the same headroom: the second's compare fails and it is retried on
 * what the first wrote. A stack without a quota adds a compare that it
 * still has none, so a quota set meanwhile is not missed.
 *
 * What is counted (serviceUsage): desired tasks (replicas; a job's
 * parallelism while it runs; one per eligible node for a global service)
 * times each task's reservations, or its limits where it reserves nothing.
 * Where a quota limits CPUs or memory, a service whose tasks reserve none of
 * it is refused, as Kubernetes refuses a pod without requests in a
 * namespace whose quota limits them. Writes that lower what a stack asks
 * for always pass, also when a stack is over a quota set below its use.
 * Not counted: the extra task a start-first update runs for a while, and
 * tasks of a global service on nodes that join after its last write.
 */
import { BatonError, type ErrorDetail } from '../base/errors.js';
import { systemClock, type Clock } from '../base/clock.js';
import { serviceKind } from '../api/kinds.js';
import type { Service } from '../api/types.js';
import { addUsage, perTask, serviceUsage, usageView, ZERO_USAGE, type Quota, type QuotaLimits, type QuotaView, type Usage } from '../api/quotas.js';
import type { Compare, Op } from '../store/store.js';
import type { AnyObject, Registry, WriteChange } from './registry.js';

const PREFIX = '/baton/quotas/';

const cpuText = (millicpus: number) => String(millicpus / 1000);
const memText = (b: number) => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let n = b;
  while (n >= 1024 && i < units.length - 1 && n % 1024 === 0) {
    n /= 1024;
    i++;
  }
  return `${n}${units[i]}`;
};

export class Quotas {
  private readonly clock: Clock;

  constructor(
    private readonly registry: Registry,
    /** How many nodes a global service runs a task on now. */
    private readonly eligibleNodes: () => number,
    clock?: Clock,
  ) {
    this.clock = clock ?? systemClock;
  }

  async get(stack: string): Promise<{ quota: Quota; mod: number } | undefined> {
    const kv = await this.registry.store.get(PREFIX + stack);
    return kv ? { quota: JSON.parse(kv.value) as Quota, mod: kv.modRevision } : undefined;
  }

  /** list: every quota with what its stack uses now. */
  async list(): Promise<QuotaView[]> {
    const r = await this.registry.store.range(PREFIX);
    const quotas = r.kvs.map((kv) => JSON.parse(kv.value) as Quota);
    if (quotas.length === 0) return [];
    const services = await this.services();
    return quotas.map((q) => ({ ...q, used: usageView(this.usageOf(services.filter((s) => s.spec.stack === q.stack))) }));
  }

  async view(stack: string): Promise<QuotaView> {
    const q = await this.get(stack);
    if (!q) throw new BatonError('BATON_ERR_NOT_FOUND', `stack "${stack}" has no quota (baton quota ls)`);
    return { ...q.quota, used: usageView(this.usageOf((await this.services()).filter((s) => s.spec.stack === stack))) };
  }

  /** set writes a stack's limits (replacing the ones it had); it may be below what the stack uses: only growth is refused then. */
  async set(stack: string, hard: QuotaLimits, by?: string): Promise<QuotaView> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.get(stack);
      const quota: Quota = { ...cur?.quota, stack, hard, updatedAt: new Date(this.clock.now()).toISOString(), ...(by ? { updatedBy: by } : {}) };
      if (!by) delete quota.updatedBy;
      const compare: Compare = cur ? { key: PREFIX + stack, target: 'mod', op: '=', value: cur.mod } : { key: PREFIX + stack, target: 'create', op: '=', value: 0 };
      const r = await this.registry.store.txn([compare], [{ type: 'put', key: PREFIX + stack, value: JSON.stringify(quota) }]);
      if (r.succeeded) return this.view(stack);
    }
    throw new BatonError('BATON_ERR_CONFLICT', `the quota of stack "${stack}" kept changing; try again`);
  }

  async remove(stack: string): Promise<void> {
    const r = await this.registry.store.txn([{ key: PREFIX + stack, target: 'create', op: '!=', value: 0 }], [{ type: 'delete', key: PREFIX + stack }]);
    if (!r.succeeded) throw new BatonError('BATON_ERR_NOT_FOUND', `stack "${stack}" has no quota (baton quota ls)`);
  }

  /**
   * guard is the registry's write guard for services: the compares and
   * puts that charge each stack's quota for these changes, or a
   * BATON_ERR_QUOTA_EXCEEDED that names the quota and what is left.
   */
  readonly guard = async (changes: readonly WriteChange[]): Promise<{ compares: Compare[]; ops: Op[] }> => {
    const nodes = this.eligibleNodes();
    const byStack = new Map<string, WriteChange[]>();
    for (const c of changes) {
      const stack = ((c.after ?? c.before)?.spec as Service['spec'] | undefined)?.stack;
      if (!stack) continue;
      const before = c.before ? this.usageOfOne(c.before, nodes) : ZERO_USAGE;
      const after = c.after ? this.usageOfOne(c.after, nodes) : ZERO_USAGE;
      if (before.millicpus === after.millicpus && before.memoryBytes === after.memoryBytes && before.tasks === after.tasks) continue;
      byStack.set(stack, [...(byStack.get(stack) ?? []), c]);
    }
    const out = { compares: [] as Compare[], ops: [] as Op[] };
    if (byStack.size === 0) return out;
    let services: (Service & AnyObject)[] | undefined;
    for (const [stack, mine] of byStack) {
      const key = PREFIX + stack;
      // The quota first, then the services: a write between the two reads has bumped the quota and fails our compare.
      const q = await this.get(stack);
      if (!q) {
        out.compares.push({ key, target: 'create', op: '=', value: 0 });
        continue;
      }
      services ??= await this.services();
      const current = new Map(services.filter((s) => s.spec.stack === stack).map((s) => [s.metadata.name, s as AnyObject]));
      const before = this.usageOf([...current.values()] as Service[], nodes);
      for (const c of mine) {
        const name = (c.after ?? c.before)!.metadata.name;
        if (c.after) current.set(name, c.after);
        else current.delete(name);
      }
      const after = this.usageOf([...current.values()] as Service[], nodes);
      const problems = exceeded(stack, q.quota.hard, before, after);
      for (const c of mine) if (c.after) problems.push(...unreserved(stack, q.quota.hard, c, nodes, this));
      if (problems.length) throw quotaError(stack, q.quota.hard, before, problems);
      const charged: Quota = { ...q.quota, charged: after, chargedAt: new Date(this.clock.now()).toISOString() };
      out.compares.push({ key, target: 'mod', op: '=', value: q.mod });
      out.ops.push({ type: 'put', key, value: JSON.stringify(charged) });
    }
    return out;
  };

  /**
   * maxReplicas: the most replicas the service may have within its stack's
   * quota, what the others of its stack ask for being as they are
   * (Infinity when the stack has no quota), with the limit that binds.
   */
  async maxReplicas(svc: Service): Promise<{ replicas: number; limit?: string }> {
    const q = svc.spec.stack ? await this.get(svc.spec.stack) : undefined;
    if (!q) return { replicas: Infinity };
    const nodes = this.eligibleNodes();
    const others = this.usageOf((await this.services()).filter((s) => s.spec.stack === svc.spec.stack && s.metadata.name !== svc.metadata.name), nodes);
    const each = perTask(svc.spec);
    let best = { replicas: Infinity, limit: undefined as string | undefined };
    const bound = (hard: number | undefined, used: number, one: number, what: string) => {
      if (hard === undefined) return;
      const n = one === 0 ? (what === 'tasks' ? Infinity : svc.spec.replicas) : Math.max(0, Math.floor((hard - used) / one));
      if (n < best.replicas) best = { replicas: n, limit: what };
    };
    bound(q.quota.hard.tasks, others.tasks, 1, 'tasks');
    bound(q.quota.hard.cpus === undefined ? undefined : Math.round(q.quota.hard.cpus * 1000), others.millicpus, each.millicpus, 'cpus');
    bound(q.quota.hard.memoryBytes, others.memoryBytes, each.memoryBytes, 'memory');
    return best.limit ? best : { replicas: Infinity };
  }

  private async services(): Promise<(Service & AnyObject)[]> {
    return (await this.registry.list<Service & AnyObject>(serviceKind)).items;
  }

  usageOfOne(o: AnyObject, nodes = this.eligibleNodes()): Usage {
    return serviceUsage(o.spec, nodes, o.status?.job);
  }

  private usageOf(services: readonly Service[], nodes = this.eligibleNodes()): Usage {
    return services.reduce((u, s) => addUsage(u, serviceUsage(s.spec, nodes, s.status?.job)), ZERO_USAGE);
  }
}

/** exceeded: each limit the change takes (further) past its quota; a dimension that does not grow is never refused. */
function exceeded(stack: string, hard: QuotaLimits, before: Usage, after: Usage): ErrorDetail[] {
  const out: ErrorDetail[] = [];
  const check = (limit: number | undefined, b: number, a: number, what: string, text: (n: number) => string) => {
    if (limit === undefined || a <= limit || a <= b) return;
    out.push({ path: `quota.${stack}.${what}`, message: `asks for ${text(a)} in all; the quota is ${text(limit)}, ${text(b)} in use, ${text(Math.max(0, limit - b))} left` });
  };
  check(hard.tasks, before.tasks, after.tasks, 'tasks', (n) => `${n} task${n === 1 ? '' : 's'}`);
  check(hard.cpus === undefined ? undefined : Math.round(hard.cpus * 1000), before.millicpus, after.millicpus, 'cpus', (n) => `${cpuText(n)} CPUs`);
  check(hard.memoryBytes, before.memoryBytes, after.memoryBytes, 'memory', memText);
  return out;
}

/** unreserved: a written service with tasks that reserve nothing of what the quota limits (its usage could not be counted). */
function unreserved(stack: string, hard: QuotaLimits, c: WriteChange, nodes: number, quotas: Quotas): ErrorDetail[] {
  const after = quotas.usageOfOne(c.after!, nodes);
  if (after.tasks === 0) return [];
  const spec = c.after!.spec as Service['spec'];
  const each = perTask(spec);
  const out: ErrorDetail[] = [];
  const name = c.after!.metadata.name;
  if (hard.cpus !== undefined && each.millicpus === 0) out.push({ path: `services.${spec.shortName || name}.resources`, message: `reserves no CPUs, and the quota of stack "${stack}" limits CPUs: give its tasks a reservation (deploy.resources.reservations.cpus, resources.requests.cpu) or a limit` });
  if (hard.memoryBytes !== undefined && each.memoryBytes === 0) out.push({ path: `services.${spec.shortName || name}.resources`, message: `reserves no memory, and the quota of stack "${stack}" limits memory: give its tasks a reservation (deploy.resources.reservations.memory, resources.requests.memory) or a limit` });
  return out;
}

function quotaError(stack: string, hard: QuotaLimits, before: Usage, problems: ErrorDetail[]): BatonError {
  const left: string[] = [];
  if (hard.tasks !== undefined) left.push(`${Math.max(0, hard.tasks - before.tasks)} of ${hard.tasks} tasks`);
  if (hard.cpus !== undefined) left.push(`${cpuText(Math.max(0, Math.round(hard.cpus * 1000) - before.millicpus))} of ${hard.cpus} CPUs`);
  if (hard.memoryBytes !== undefined) left.push(`${memText(Math.max(0, hard.memoryBytes - before.memoryBytes))} of ${memText(hard.memoryBytes)} memory`);
  const first = problems[0]!;
  const what = first.path.startsWith('quota.') ? `${first.path.slice(`quota.${stack}.`.length)} ${first.message}` : first.message;
  return new BatonError('BATON_ERR_QUOTA_EXCEEDED', `the quota of stack "${stack}" does not allow this: ${what} (left: ${left.join(', ')}; baton quota ls)`, problems);
}
