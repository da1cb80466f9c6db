/**
 * Service VIPs: each Endpoints object carries its service's virtual IP
 * (`spec.vip`), an address of the server's `--service-cidr` (10.43.0.0/16),
 * unique cluster-wide and kept for the service's life, as Kubernetes'
 * ClusterIP allocator and Swarm's VIPs give them. Nodes resolve and route it
 * from the Endpoints alone.
 *
 * A VIP is held as a node's task range is (ipam.ts): by a key of its own,
 * `/baton/ipam/vips/<ip>` → `<service>/<uid>`, created with a compare
 * "absent" in the same txn that writes the Endpoints with that VIP, and
 * deleted in the same txn that deletes the Endpoints. Uniqueness is
 * therefore the store's, not this process's: servers sharing one store (the
 * HA control plane) may choose one address at once, and only one txn
 * commits; the loser tries the next address. The Endpoints cache only
 * suggests which addresses are free (it is made consistent with the store
 * first, as a list is), and addresses this server's own endpoints workers
 * are writing are skipped, so they do not race each other for one address.
 *
 * The VIP lives as long as the Endpoints: an update keeps it, and so does a
 * server restart (it is in the store). It is freed when the Endpoints goes:
 * the service was deleted, or no longer needs one (no port, not bridge
 * networking); a service deleted and made again under its name (a new uid)
 * gets a new one, as in Kubernetes. A server restarted with another
 * `--service-cidr` leaves VIPs outside it with their services, as it does
 * node ranges.
 *
 * The range's network and broadcast addresses are never given. A full range
 * never holds an Endpoints back: it is written without a VIP and a Warning
 * event says so (the service is then reachable by `tasks.` names only); the
 * endpoints controller tries again when a VIP is freed.
 */
import { BatonError } from '../base/errors.js';
import { formatCidr, intToIp, ipToInt, sizeOf } from '../base/cidr.js';
import { endpointsKind } from '../api/kinds.js';
import type { Endpoints, EndpointsSpec, Service } from '../api/types.js';
import type { Compare, Op } from '../store/store.js';
import { recordEvent, type ControllerContext } from './controllers/context.js';
import { vipCount, WriteHolds } from './ipam.js';
import { stableStringify, type AnyObject } from './registry.js';

export const VIP_PREFIX = '/baton/ipam/vips/';

/** How long an allocation waits for the Endpoints cache to catch up with the store (as a consistent list waits). */
const CACHE_WAIT_MS = 3000;

/** vipKey is where the store records who holds VIP `ip`. */
export function vipKey(ip: string): string {
  return `${VIP_PREFIX}${ip}`;
}

/** vipHolder is the value of a VIP's key: the service's name and uid (a service made again under its name is another holder). */
export function vipHolder(service: string, uid: string): string {
  return `${service}/${uid}`;
}

type EndpointsObject = Endpoints & AnyObject;

/** ownerUid is the uid of the service an Endpoints was written for. */
export function ownerUid(e: Endpoints): string | undefined {
  return e.metadata.ownerRefs?.find((r) => r.kind === 'Service')?.uid;
}

/** ServiceVips writes Endpoints together with their VIPs: creation gives one, an update keeps it, deletion frees it. */
export class ServiceVips {
  /** VIPs this server is writing now: its other workers skip them. */
  private readonly holds = new WriteHolds();

  constructor(private readonly ctx: Pick<ControllerContext, 'registry' | 'endpoints' | 'network' | 'events' | 'log'>) {}

  /**
   * write makes service svc's Endpoints say `spec` (built without a VIP):
   * it creates it with a new VIP, or updates `cur` (read from the cache)
   * keeping its VIP, or giving it one when it has none; one txn with the
   * VIP's key. Nothing is written when nothing would change. A stale `cur`
   * fails its compare: a conflict, which the controller's queue retries.
   */
  async write(svc: Service, cur: EndpointsObject | undefined, spec: EndpointsSpec): Promise<void> {
    const { registry } = this.ctx;
    const name = svc.metadata.name;
    const lost = new Set<number>();
    for (;;) {
      const kept = cur?.spec.vip;
      const got = kept ? undefined : await this.choose(lost);
      try {
        const vip = kept ?? (got ? intToIp(got.value) : undefined);
        const next: EndpointsSpec = vip ? { ...spec, vip } : spec;
        if (cur && stableStringify(cur.spec) === stableStringify(next)) return;
        const obj = cur ? registry.specUpdate(cur, { spec: next }) : registry.build(endpointsKind, { metadata: { name, ownerRefs: [{ kind: 'Service', name, uid: svc.metadata.uid }] }, spec: next, status: {} });
        const { compare, op } = cur ? registry.updateOp(endpointsKind, cur, obj) : registry.createOp(endpointsKind, obj);
        const compares: Compare[] = [compare];
        const ops: Op[] = [op];
        if (got) {
          compares.push({ key: vipKey(vip!), target: 'create', op: '=', value: 0 });
          ops.push({ type: 'put', key: vipKey(vip!), value: vipHolder(name, svc.metadata.uid) });
        }
        const r = await registry.store.txn(compares, ops);
        if (r.succeeded) {
          // Held until the cache shows it taken, so the next allocation here does not try it.
          if (got) await this.ctx.endpoints.caughtUp(r.revision, CACHE_WAIT_MS);
          if (!vip) this.exhausted(svc);
          return;
        }
        // Lost the address to another writer (another server, or an Endpoints the cache did not show yet): the next one.
        if (got && (await registry.store.get(vipKey(vip!)))) {
          lost.add(got.value);
          continue;
        }
        throw new BatonError('BATON_ERR_CONFLICT', `endpoints "${name}" changed while they were written; trying again`);
      } finally {
        got?.release();
      }
    }
  }

  /**
   * delete deletes Endpoints `cur` and frees its VIP in one txn (the key
   * only while it names cur's service). Returns whether a VIP was freed.
   */
  async delete(cur: EndpointsObject): Promise<boolean> {
    const { registry } = this.ctx;
    const name = cur.metadata.name;
    const { compare, op } = registry.deleteOp(endpointsKind, cur);
    const compares: Compare[] = [compare];
    const ops: Op[] = [op];
    const vip = cur.spec.vip;
    let freed = false;
    if (vip) {
      const key = vipKey(vip);
      const holder = vipHolder(name, ownerUid(cur) ?? '');
      const held = await registry.store.get(key);
      if (held?.value === holder) {
        compares.push({ key, target: 'value', op: '=', value: holder });
        ops.push({ type: 'delete', key });
        freed = true;
      } else this.ctx.log.warn({ service: name, vip, heldBy: held?.value }, `service ${name}'s VIP ${vip} is not recorded as its own; left as it is`);
    }
    if (!(await registry.store.txn(compares, ops)).succeeded) throw new BatonError('BATON_ERR_CONFLICT', `endpoints "${name}" changed while they were deleted; trying again`);
    return freed;
  }

  /**
   * choose finds the lowest address of the service CIDR, network and
   * broadcast left out, that no Endpoints holds (by the cache, made
   * consistent with the store first), that `lost` does not name and that
   * this server is not writing, and holds it until `release`; undefined
   * when every one is held.
   */
  private async choose(lost: ReadonlySet<number>): Promise<{ value: number; release: () => void } | undefined> {
    const { endpoints, registry, network } = this.ctx;
    await endpoints.syncedTo(await registry.store.currentRevision(), CACHE_WAIT_MS);
    const first = network.service.base + 1;
    const last = network.service.base + sizeOf(network.service) - 2;
    return this.holds.first(function* () {
      const held = new Set<number>();
      for (const e of endpoints.objects.values()) {
        const vip = (e as unknown as Endpoints).spec.vip;
        if (vip) held.add(ipToInt(vip));
      }
      for (let a = first; a <= last; a++) if (!held.has(a) && !lost.has(a)) yield a;
    });
  }

  private exhausted(svc: Service): void {
    const { network } = this.ctx;
    const name = svc.metadata.name;
    const message = `no service VIP left for ${name}: the service CIDR ${formatCidr(network.service)} holds ${vipCount(network)} and services hold all of them; it is reachable by tasks.${svc.spec.shortName || name} names only until one is freed (remove a service, or restart the server with a larger --service-cidr)`;
    recordEvent(this.ctx, { type: 'Warning', reason: 'ServiceVipsExhausted', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/endpoints', message });
  }
}
