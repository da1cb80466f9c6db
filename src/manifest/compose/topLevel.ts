/**
 * The file's top level: its keys that the policy table decides (version,
 * secrets, include...), the declared networks (networks.ts), and the
 * declared volumes (volumes.ts: their engine names, drivers and options).
 */

import { isObj, type Ctx, type Obj } from './issues.js';
import { COMPOSE_KEY_POLICY } from './keyPolicy.js';
import { readNetworks } from './networks.js';
import { readDefinitions } from './files.js';
import { declareVolume } from './volumes.js';

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
  for (const [name, vol] of Object.entries(data.volumes)) declareVolume(ctx, name, isObj(vol) ? vol : {});
}
