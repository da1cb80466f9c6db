/**
 * Compose networking, read for Baton: the top-level `networks`, a service's
 * `networks` and `network_mode`, `links`, `deploy.endpoint_mode`, and the
 * stack's published ports taken as a whole.
 *
 * Every task has a network namespace of its own (network_mode bridge, the
 * default) with one address from its node's range; a network is a name that
 * decides which services reach each other and which names each task's DNS
 * answers. So a network's driver, subnet or options have nothing to act on:
 * a value that asks for Baton's own behaviour passes, anything else goes to
 * the key policy table (COMPOSE_KEY_POLICY in keyPolicy.ts) and is refused or
 * warned about with its reason there.
 */

import { defaultNetwork, type NetworkMode, type PortSpec, type ServiceNetwork } from '../../api/types.js';
import { dnsNameSchema, MAX_NETWORK_ALIASES, MAX_SERVICE_NETWORKS, networkNameSchema } from '../../api/schemas.js';
import type { PathSegment } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';

/** NetworkCtx is what this module needs of the reader's context (Ctx in issues.ts). */
export interface NetworkCtx {
  readonly stack: string;
  error(segs: PathSegment[], message: string): void;
  /** Refuses a key or value by its policy row (a warning with --ignore-unsupported). */
  unsupported(segs: PathSegment[], rowKey: string, what?: string): void;
  /** Applies a policy row: a warning, or unsupported. */
  policy(segs: PathSegment[], rowKey: string): void;
  /** Applies the policy table to every key of obj but the handled ones. */
  checkKeys(obj: Record<string, unknown>, segs: PathSegment[], pattern: string, handled: readonly string[]): void;
}

/** DeclaredNetworks maps each network key a service may name to the network's full name; `default` is always there. */
export type DeclaredNetworks = ReadonlyMap<string, string>;

/** PublishedPort is one translated port with the key path of the `ports` item it came from. */
export interface PublishedPort {
  segs: PathSegment[];
  port: PortSpec;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const isEmpty = (v: unknown): boolean => v === null || (Array.isArray(v) && v.length === 0) || (isObj(v) && Object.keys(v).length === 0);
const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v) ?? String(v));

/** flag reads a Compose boolean (true/false, or the strings interpolation leaves). */
function flag(ctx: NetworkCtx, v: unknown, segs: PathSegment[]): boolean | undefined {
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  ctx.error(segs, `must be true or false, got ${JSON.stringify(v)}`);
  return undefined;
}

/** BATON_DRIVERS both mean Baton's network: a bridge on every node, its tasks reaching each other's across nodes. */
const BATON_DRIVERS = ['bridge', 'overlay'];

/** FLAG_DEFAULTS: each network flag's value that asks for what Baton does anyway, so it passes without a word; the other goes to the policy row `networks.*.<flag>`. */
const FLAG_DEFAULTS: Readonly<Record<string, boolean>> = { internal: false, enable_ipv4: true, enable_ipv6: false, attachable: false };

/** IPAM_DEFAULTS: the same for `ipam`'s keys (row `networks.*.ipam.<key>`). */
const IPAM_DEFAULTS: Readonly<Record<string, (v: unknown) => boolean>> = {
  driver: (v) => v === 'default' || v === null,
  config: isEmpty,
  options: isEmpty,
};

/**
 * readNetworks reads the top-level `networks`: each key is a network of the
 * stack, `<stack>_<key>` unless `name` gives another; an external network
 * keeps its own name as is, which is how two stacks share one. `default` is
 * the stack's `<stack>_default` unless the file redeclares it.
 */
export function readNetworks(ctx: NetworkCtx, v: unknown): DeclaredNetworks {
  const declared = new Map<string, string>([['default', defaultNetwork(ctx.stack)]]);
  if (!isObj(v)) return declared;
  for (const [key, raw] of Object.entries(v)) {
    const segs: PathSegment[] = ['networks', key];
    const n = isObj(raw) ? raw : {};
    ctx.checkKeys(n, segs, 'networks.*', ['name', 'external', 'driver', 'driver_opts', 'ipam', ...Object.keys(FLAG_DEFAULTS)]);
    const ext = n.external;
    const external = isObj(ext) || (ext !== undefined && ext !== null && flag(ctx, ext, [...segs, 'external']) === true);
    const own = typeof n.name === 'string' && n.name !== '' ? n.name : undefined;
    const extName = isObj(ext) && typeof ext.name === 'string' && ext.name !== '' ? ext.name : undefined;
    if (own !== undefined && extName !== undefined && own !== extName) ctx.error([...segs, 'external', 'name'], `conflicts with \`name\` ("${extName}" vs "${own}"); set \`name\` only`);
    const full = external ? (own ?? extName ?? key) : (own ?? `${ctx.stack}_${key}`);
    const nameSegs = own !== undefined ? [...segs, 'name'] : extName !== undefined ? [...segs, 'external', 'name'] : segs;
    const checked = networkNameSchema.safeParse(full);
    if (!checked.success) ctx.error(nameSegs, `the network's name "${full}" is not ${checked.error.issues[0]?.message ?? 'a network name'}`);
    else if (full === 'host' || full === 'none') ctx.error(nameSegs, `"${full}" is the engine's name for ${full === 'host' ? "the node's own network" : 'no network'}, not a network of tasks: give the services \`network_mode: ${full}\` instead`);
    declared.set(key, full);

    if (n.driver !== undefined && n.driver !== null && !BATON_DRIVERS.includes(n.driver as string)) {
      ctx.error([...segs, 'driver'], `driver ${JSON.stringify(n.driver)} is not one Baton implements: leave it out, or write bridge or overlay; both mean Baton's network, which spans every node`);
    }
    for (const [k, usual] of Object.entries(FLAG_DEFAULTS)) {
      if (n[k] === undefined || n[k] === null) continue;
      const on = flag(ctx, n[k], [...segs, k]);
      if (on !== undefined && on !== usual) ctx.policy([...segs, k], `networks.*.${k}`);
    }
    if (n.driver_opts !== undefined && !isEmpty(n.driver_opts)) ctx.policy([...segs, 'driver_opts'], 'networks.*.driver_opts');
    if (isObj(n.ipam)) {
      for (const [k, value] of Object.entries(n.ipam)) {
        if (k.startsWith('x-')) continue;
        const usual = Object.hasOwn(IPAM_DEFAULTS, k) ? IPAM_DEFAULTS[k] : undefined;
        if (!usual?.(value)) ctx.policy([...segs, 'ipam', k], `networks.*.ipam.${k}`);
      }
    }
  }
  return declared;
}

/**
 * readServiceNetworking reads a service's `network_mode` and `networks`.
 * With neither, the service is on its stack's default network (networks is
 * left out unless the file renamed that network). A service that lists
 * networks is on those only, not on `default` unless it lists it, as in
 * Compose; and as in Compose, `network_mode` and `networks` exclude each
 * other.
 */
export function readServiceNetworking(ctx: NetworkCtx, svc: Obj, base: PathSegment[], declared: DeclaredNetworks): { mode: NetworkMode; networks?: ServiceNetwork[] } {
  const hasMode = svc.network_mode !== undefined && svc.network_mode !== null;
  const mode = hasMode ? networkMode(ctx, svc.network_mode, [...base, 'network_mode'], declared) : 'bridge';
  const entries = networkEntries(svc.networks, [...base, 'networks']);
  if (entries.length === 0) {
    const def = declared.get('default')!;
    return mode === 'bridge' && def !== defaultNetwork(ctx.stack) ? { mode, networks: [{ name: def, aliases: [] }] } : { mode };
  }
  // A refused mode (service:, container:) is reported already, or dropped with --ignore-unsupported.
  if (hasMode && svc.network_mode === mode) {
    ctx.error([...base, 'network_mode'], 'cannot be combined with `networks` (Compose refuses it too): each task of a service with `networks` has a namespace of its own (bridge) on them; keep one of the two');
    return { mode };
  }
  const out: ServiceNetwork[] = [];
  for (const { name, segs, opts } of entries) {
    const full = declared.get(name);
    if (full === undefined) {
      ctx.error(segs, `network "${name}" is not declared under the top-level \`networks\` (declared: ${[...declared.keys()].join(', ')})`);
      continue;
    }
    const aliases: string[] = [];
    if (isObj(opts)) {
      ctx.checkKeys(opts, segs, 'services.*.networks.*', ['aliases']);
      if (Array.isArray(opts.aliases)) {
        opts.aliases.forEach((a, i) => {
          if (typeof a === 'string' && dnsNameSchema.safeParse(a).success) aliases.push(a);
          else ctx.error([...segs, 'aliases', i], `${JSON.stringify(a)} is not a DNS name: letters, digits and "-", in labels of at most 63 separated by dots`);
        });
        if (aliases.length > MAX_NETWORK_ALIASES) ctx.error([...segs, 'aliases'], `has ${aliases.length} aliases; a service has at most ${MAX_NETWORK_ALIASES} on one network`);
      }
    }
    // Two keys may name one network (`name:`): the service is on it once, with every alias.
    const same = out.find((n) => n.name === full);
    if (same) same.aliases.push(...aliases.filter((a) => !same.aliases.includes(a)));
    else out.push({ name: full, aliases });
  }
  if (out.length > MAX_SERVICE_NETWORKS) ctx.error([...base, 'networks'], `names ${out.length} networks; a service joins at most ${MAX_SERVICE_NETWORKS}`);
  return { mode, networks: out };
}

/** networkEntries lists a service's `networks` in both forms: a list of names (path `networks[i]`) or a map of name → null or options (path `networks.<name>`). */
function networkEntries(v: unknown, segs: PathSegment[]): { name: string; segs: PathSegment[]; opts: unknown }[] {
  if (Array.isArray(v)) return v.flatMap((name, i) => (typeof name === 'string' ? [{ name, segs: [...segs, i], opts: null }] : []));
  if (isObj(v)) return Object.entries(v).map(([name, opts]) => ({ name, segs: [...segs, name], opts }));
  return [];
}

function networkMode(ctx: NetworkCtx, v: unknown, segs: PathSegment[], declared: DeclaredNetworks): NetworkMode {
  if (v === 'host' || v === 'none' || v === 'bridge') return v;
  const s = show(v);
  if (s.startsWith('service:')) ctx.unsupported(segs, 'services.*.network_mode=service:', s);
  else if (s.startsWith('container:')) ctx.unsupported(segs, 'services.*.network_mode=container:', s);
  else {
    const hint = declared.has(s) && s !== 'default' ? `; to join network "${s}", write \`networks: [${s}]\`` : '';
    ctx.error(segs, `must be bridge (the default: a network namespace of the task's own), host or none; got ${JSON.stringify(v)}${hint}`);
  }
  return 'bridge';
}

/**
 * readLinks reads `links`: a link without an alias (`db`, `db:db`) adds
 * nothing to reaching a service by name on a shared network, so it only
 * warns; an alias is seen by the linking service alone, which Baton's DNS
 * (the same names for every task on a network) cannot do, so it is refused.
 */
export function readLinks(ctx: NetworkCtx, v: unknown, segs: PathSegment[]): void {
  if (!Array.isArray(v)) return;
  let plain = false;
  v.forEach((item, i) => {
    const [target, alias] = show(item).split(':');
    if (alias === undefined || alias === target) plain = true;
    else ctx.unsupported([...segs, i], 'services.*.links', `alias ${alias}`);
  });
  if (plain) ctx.policy(segs, 'services.*.links=name');
}

/** readEndpointMode reads `deploy.endpoint_mode`: vip is what Baton does; dnsrr only warns, since `tasks.<service>` gives its answer. */
export function readEndpointMode(ctx: NetworkCtx, v: unknown, segs: PathSegment[]): void {
  if (v === undefined || v === null || v === 'vip') return;
  if (v === 'dnsrr') ctx.policy(segs, 'services.*.deploy.endpoint_mode=dnsrr');
  else ctx.error(segs, `must be vip or dnsrr, got ${JSON.stringify(v)}`);
}

/**
 * checkPublishedPorts refuses two services of the stack publishing one port
 * and protocol when either does so in ingress mode: the routing mesh holds
 * an ingress port on every node, so it can lead to one service only. Two
 * host-mode ports may share a number, as on Swarm: the scheduler never puts
 * their tasks on one node. (One service's own repeats are reported where
 * its ports are read.)
 */
export function checkPublishedPorts(ctx: NetworkCtx, ports: readonly PublishedPort[]): void {
  const first = new Map<string, PublishedPort>();
  for (const p of ports) {
    if (p.port.published === undefined) continue;
    const key = `${p.port.published}/${p.port.protocol}`;
    const prev = first.get(key);
    if (!prev) {
      first.set(key, p);
      continue;
    }
    if (prev.segs[1] === p.segs[1] || (prev.port.mode === 'host' && p.port.mode === 'host')) continue;
    ctx.error(p.segs, `published port ${key} is already published by \`${formatKeyPath(prev.segs)}\`: a port published in ingress mode is held on every node, so it leads to one service only`);
  }
}
