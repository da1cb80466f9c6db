/**
 * The envelope every resource shares: API version, object metadata and owner
 * references.
 * Part of the API types: api/types.ts re-exports every part.
 */

export const API_VERSION = 'baton/v1';

export interface OwnerRef {
  kind: string;
  name: string;
  uid: string;
}

export interface ObjectMeta {
  name: string;
  uid: string;
  /** The store modRevision of the object's last write, as a decimal string. */
  resourceVersion: string;
  /** Bumped by the server on every spec change (never on status writes). */
  generation: number;
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  ownerRefs: OwnerRef[];
  /** ISO-8601. */
  creationTimestamp: string;
  /** The store revision at which status was last written ("0" before any). */
  statusVersion?: string;
}

export interface Resource<K extends string, S, St> {
  apiVersion: typeof API_VERSION;
  kind: K;
  metadata: ObjectMeta;
  spec: S;
  status: St;
}
