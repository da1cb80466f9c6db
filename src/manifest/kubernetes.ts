/**
 * Kubernetes manifests fed to `baton apply`: recognised and refused, document
 * by document, so a user who points Baton at a k8s file learns at once which
 * objects it holds and that this release reads Compose only.
 */

import { isMap, isScalar, type Document, type LineCounter } from 'yaml';
import type { ErrorDetail } from '../base/errors.js';

/** KUBERNETES_REFUSAL starts every refusal message, so callers and tests can recognise it. */
export const KUBERNETES_REFUSAL = 'Kubernetes manifests are not supported yet';

/**
 * isKubernetesDocument says whether a YAML document looks like a Kubernetes
 * object (a mapping with both `apiVersion` and `kind`), a shape no Compose
 * file has, so the check cannot misfire on Compose.
 */
export function isKubernetesDocument(doc: Document): boolean {
  return isMap(doc.contents) && doc.has('apiVersion') && doc.has('kind');
}

/**
 * kubernetesRefusal builds the one error for one Kubernetes document, e.g.
 * "Kubernetes manifests are not supported yet: Deployment web" at path
 * documents[i], reading only the AST so template placeholders and odd keys
 * elsewhere in the object cannot make the refusal itself fail.
 */
export function kubernetesRefusal(doc: Document, index: number, lineCounter?: LineCounter): ErrorDetail {
  const scalar = (v: unknown): string | undefined => {
    const raw = isScalar(v) ? v.value : v;
    return raw === null || raw === undefined || typeof raw === 'object' ? undefined : String(raw);
  };
  const kind = scalar(doc.get('kind', true)) ?? 'object';
  const name = scalar(doc.getIn(['metadata', 'name'], true)) ?? scalar(doc.getIn(['metadata', 'generateName'], true));
  const detail: ErrorDetail = {
    path: `documents[${index}]`,
    message: `${KUBERNETES_REFUSAL}: ${kind}${name ? ` ${name}` : ''}`,
  };
  const start = doc.contents?.range?.[0];
  if (lineCounter && start !== undefined) detail.line = lineCounter.linePos(start).line;
  return detail;
}
