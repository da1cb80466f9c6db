/**
 * World: what one apply's documents know of each other, gathered before any
 * workload is read: the stack (the namespace), ConfigMaps and Secrets with
 * their keys, PriorityClasses. ConfigMaps and Secrets become Baton configs
 * and secrets, one per key (a Baton config is one file).
 */
import { createHash } from 'node:crypto';
import type { FileInput } from '../../api/types.js';
import { isObj, type Issues, type KDoc } from './documents.js';
import { KEY_LABEL, KIND_LABEL, NAME_LABEL } from './labels.js';

export interface FileSet {
  /** The document, or none for one of an earlier apply (whose keys only are known: its values stay on the servers). */
  doc?: KDoc;
  entries: Map<string, Buffer>;
}

/** A key of a ConfigMap or Secret an earlier apply made (the CLI lists them from the stack's configs and secrets). */
export interface EarlierFile {
  kind: 'ConfigMap' | 'Secret';
  name: string;
  key: string;
}

/** Baton's object names: letters, digits, "_", "." and "-", at most 63. */
const NAME_MAX = 63;

export class World {
  readonly configMaps = new Map<string, FileSet>();
  readonly secrets = new Map<string, FileSet>();
  readonly priorities = new Map<string, number>();
  /** StatefulSet → the Service that governs it (its pods' DNS names are under that Service's name). */
  readonly governing = new Map<string, string>();

  private readonly earlier = new Map<string, FileSet>();

  constructor(
    readonly stack: string,
    earlier: readonly EarlierFile[] = [],
  ) {
    for (const f of earlier) {
      const key = `${f.kind}/${f.name}`;
      let set = this.earlier.get(key);
      if (!set) this.earlier.set(key, (set = { entries: new Map() }));
      set.entries.set(f.key, Buffer.alloc(0));
    }
  }

  configMap(name: string): FileSet | undefined {
    return this.configMaps.get(name) ?? this.earlier.get(`ConfigMap/${name}`);
  }

  secret(name: string): FileSet | undefined {
    return this.secrets.get(name) ?? this.earlier.get(`Secret/${name}`);
  }

  priority(name: string): number | undefined {
    return this.priorities.get(name);
  }

  /** fileName: the Baton config or secret holding one key of a ConfigMap or Secret, `<stack>_<object>.<key>` (hashed when longer than a name may be). */
  fileName(object: string, key: string): string {
    const full = `${this.stack}_${object}.${key}`.replace(/[^A-Za-z0-9_.-]/g, '-');
    if (full.length <= NAME_MAX) return full;
    const h = createHash('sha256').update(full).digest('hex').slice(0, 10);
    return `${full.slice(0, NAME_MAX - 11)}-${h}`;
  }

  /** files: every key of every ConfigMap (configs) or Secret (secrets) of the apply, to create or update with it. */
  files(kind: 'config' | 'secret'): FileInput[] {
    const out: FileInput[] = [];
    for (const [name, set] of kind === 'config' ? this.configMaps : this.secrets) {
      for (const [key, data] of set.entries) out.push({ name: this.fileName(name, key), data: data.toString('base64'), labels: { [KIND_LABEL]: kind === 'config' ? 'ConfigMap' : 'Secret', [NAME_LABEL]: name, [KEY_LABEL]: key } });
    }
    return out;
  }

  /** gather reads a ConfigMap, Secret or PriorityClass. */
  gather(d: KDoc, issues: Issues): void {
    const o = d.obj;
    if (d.kind === 'PriorityClass') {
      if (typeof o.value !== 'number' || !Number.isInteger(o.value)) issues.error(d, ['value'], 'must be a whole number');
      else this.priorities.set(d.name, o.value);
      return;
    }
    const entries = new Map<string, Buffer>();
    const key = /^[-._a-zA-Z0-9]+$/;
    const add = (field: string, values: unknown, decode: (v: string) => Buffer | undefined) => {
      if (values === undefined || values === null) return;
      if (!isObj(values)) return issues.error(d, [field], 'must be a mapping of keys to values');
      for (const [k, v] of Object.entries(values)) {
        if (!key.test(k)) {
          issues.error(d, [field, k], 'a key is letters, digits, "-", "_" and "."');
          continue;
        }
        const b = decode(typeof v === 'string' ? v : String(v ?? ''));
        if (b === undefined) issues.error(d, [field, k], 'must be base64');
        else entries.set(k, b);
      }
    };
    const base64 = (v: string) => (/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(v) ? Buffer.from(v, 'base64') : undefined);
    if (d.kind === 'ConfigMap') {
      add('data', o.data, (v) => Buffer.from(v, 'utf8'));
      add('binaryData', o.binaryData, base64);
      this.configMaps.set(d.name, { doc: d, entries });
    } else {
      const type = typeof o.type === 'string' ? o.type : 'Opaque';
      if (type === 'kubernetes.io/service-account-token') return issues.unsupported(d, ['type'], 'a service account token', 'there is no Kubernetes API to give a token for');
      add('data', o.data, base64);
      add('stringData', o.stringData, (v) => Buffer.from(v, 'utf8'));
      this.secrets.set(d.name, { doc: d, entries });
    }
  }
}
