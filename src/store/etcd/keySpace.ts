/**
 * KeySpace maps Store keys to etcd keys under one prefix and back.
 *
 * Why a prefix: several Baton clusters, or every case of a test suite, can
 * share one etcd without seeing each other's keys; the Store's key '' is the
 * prefix itself, so `range('')` and `watch('', …)` mean "everything of this
 * store", as they do on SQLite. Keys are UTF-8 bytes in etcd; code-point
 * order (the Store's order) is UTF-8 byte order, so etcd's ranges and the
 * other backends' agree.
 */
import type { IKeyValue } from 'etcd3';
import type { KeyValue } from '../store.js';

export class KeySpace {
  readonly prefix: Buffer;

  constructor(prefix: string) {
    this.prefix = Buffer.from(prefix, 'utf8');
  }

  /** key is the etcd key of Store key k. */
  key(k: string): Buffer {
    return Buffer.concat([this.prefix, Buffer.from(k, 'utf8')]);
  }

  /** range is etcd's [key, range_end) holding every Store key that starts with `from` … up to the end of `prefix`. */
  range(prefix: string, from = prefix): { key: Buffer; range_end: Buffer } {
    const whole = this.key(prefix);
    const key = this.key(from);
    // An empty etcd key cannot be asked for; "\0" is the smallest there is.
    return { key: key.length ? key : Buffer.from([0]), range_end: bytesEnd(whole) };
  }

  /** storeKey strips the prefix from an etcd key (one this space gave out). */
  storeKey(k: Buffer): string {
    return k.subarray(this.prefix.length).toString('utf8');
  }

  /** kv turns etcd's key-value (int64s as strings) into the Store's. */
  kv(kv: IKeyValue): KeyValue {
    return Object.freeze({
      key: this.storeKey(kv.key),
      value: kv.value.toString('utf8'),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
      version: Number(kv.version),
      lease: Number(kv.lease),
    });
  }
}

/**
 * bytesEnd is etcd's range_end for a prefix: the prefix with its last byte
 * below 0xff incremented and what follows dropped; "\0" (every key) when
 * there is none.
 */
export function bytesEnd(prefix: Buffer): Buffer {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i]!++;
      return end;
    }
  }
  return Buffer.from([0]);
}
