/**
 * `baton secret` and `baton config`: create, give a new content (which rolls
 * the services using it), list, inspect (a hash, never the content), remove.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { configKind, secretKind } from '../api/kinds.js';
import { BatonError } from '../base/errors.js';
import { addKindCommands, client, labelMap, out } from './common.js';

export function registerFileCommands(program: Command): void {
  for (const kind of [secretKind, configKind]) {
    const noun = kind.kind.toLowerCase();
    const group = program.command(noun).description(`manage ${kind.plural} (tasks get them as files${noun === 'secret' ? ' at /run/secrets/NAME; encrypted at rest' : ''})`);
    addKindCommands(group, kind);
    const content = (file: string): string => {
      const data = file === '-' ? readFileSync(0) : existsSync(file) ? readFileSync(file) : undefined;
      if (!data) throw new BatonError('BATON_ERR_BAD_REQUEST', `${file}: no such file (give a file, or - for standard input)`);
      return data.toString('base64');
    };
    group
      .command('create <name> <file>')
      .description(`create a ${noun} from FILE (- reads standard input)`)
      .option('--label <k=v...>', 'label (repeatable)')
      .action(async (name: string, file: string, o: { label?: string[] }, cmd: Command) => {
        const { api } = client(cmd);
        const r = await api.call<{ spec: { hash: string } }>('POST', `/api/v1/${kind.plural}`, { name, data: content(file), ...(o.label ? { labels: labelMap(o.label, '--label') } : {}) });
        out(`created ${noun} ${name} (sha256 ${r.spec.hash.slice(0, 12)})`);
      });
    group
      .command('update <name> <file>')
      .description(`give a ${noun} a new content from FILE (- reads standard input); the services using it roll by their update_config`)
      .action(async (name: string, file: string, _o, cmd: Command) => {
        const { api } = client(cmd);
        const r = await api.call<{ spec: { hash: string }; rolled: string[] }>('PUT', `/api/v1/${kind.plural}/${encodeURIComponent(name)}`, { data: content(file) });
        out(`${noun} ${name} is now sha256 ${r.spec.hash.slice(0, 12)}${r.rolled.length ? `; rolling ${r.rolled.join(', ')}` : ''}`);
      });
    group
      .command('rm <name...>')
      .description(`remove ${kind.plural} that no service uses`)
      .action(async (names: string[], _o, cmd: Command) => {
        const { api } = client(cmd);
        for (const n of names) {
          await api.call('DELETE', `/api/v1/${kind.plural}/${encodeURIComponent(n)}`);
          out(`removed ${noun} ${n}`);
        }
      });
  }
}
