/**
 * The file's top level: its keys that the policy table decides (version,
 * secrets, include...), the declared networks (networks.ts), and the
 * declared volumes with the engine names that services' mounts use.
 */

import type { PathSegment } from '../interpolate.js';
import { isObj, type Ctx, type Obj } from './issues.js';
import { COMPOSE_KEY_POLICY } from './keyPolicy.js';
import { readNetworks } from './networks.js';
import { readDefinitions } from './files.js';

const TOP_LEVEL_HANDLED = ['name', 'services', 'volumes', 'networks', 'secrets', 'configs'];

export function translateTopLevel(ctx: Ctx, data: Obj): void {
  for (const key of Object.keys(data)) {
    if (TOP_LEVEL_HANDLED.includes(key)) continue;
    if (key === 'x-baton') {
      ctx.error([key], '`x-baton` belongs under a service (services.<name>.x-baton)');
      continue;
    }
    if (key.startsWith('x-')) continue;
    if (!Object.hasOwn(COMPOSE_KEY_POLICY, key)) continue; // unknown top-level keys are schema errors already
    ctx.policy([key], key);
  }
  ctx.networks = readNetworks(ctx, data.networks);
  readDefinitions(ctx, 'secret', data.secrets);
  readDefinitions(ctx, 'config', data.configs);
  if (!isObj(data.volumes)) return;
  for (const [name, vol] of Object.entries(data.volumes)) {
    const segs: PathSegment[] = ['volumes', name];
    const v = isObj(vol) ? vol : {};
    const ext = v.external;
    const external = ext === true || ext === 'true' || isObj(ext);
    const extName = isObj(ext) && typeof ext.name === 'string' ? ext.name : undefined;
    const customName = typeof v.name === 'string' && v.name !== '' ? v.name : undefined;
    ctx.volumes.set(name, { source: external ? (customName ?? extName ?? name) : (customName ?? `${ctx.stack}_${name}`) });
    for (const key of Object.keys(v)) {
      if (key === 'name' || key === 'external' || key.startsWith('x-')) continue;
      if (key === 'driver' && (v.driver === 'local' || v.driver === 'default')) continue;
      if (key === 'driver_opts' && isObj(v.driver_opts) && Object.keys(v.driver_opts).length === 0) continue;
      ctx.policy([...segs, key], `volumes.*.${key}`);
    }
  }
}
