/**
 * The client side of the cluster's TLS: every caller (CLI, agent, dashboard
 * proxy, bench) reaches the server over HTTPS, trusting only the cluster CA,
 * and an agent also presents its node certificate (mutual TLS). undici's own
 * fetch is used with its Agent, since the fetch bundled with Node 20 comes from
 * another undici and does not accept this one's dispatcher.
 */
import { createSecureContext, type SecureContext } from 'node:tls';
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici';
import type { ClientOptions } from './client.js';

export interface TlsIdentity {
  /** PEM of the cluster CA: the only root trusted. */
  caPem: string;
  /** The node certificate and key, for mutual TLS (agents). */
  certPem?: string;
  keyPem?: string;
  /** Dial from this local address (an agent's own --address), so the server sees who calls. */
  localAddress?: string;
}

export interface Transport {
  /** fetch and its init, for callers that want a Response (tests); ApiClient uses the dispatcher. */
  fetch: typeof fetch;
  init: Record<string, unknown>;
  dispatcher: Dispatcher;
  close(): Promise<void>;
}

/**
 * The common name of the client certificate the server presents when it
 * calls an agent's listener (logs); no node may join under this name.
 */
export const SERVER_CLIENT_CN = 'baton-server';

/** tlsTransport builds a fetch and dispatcher that trust the cluster CA and present the identity's certificate, if any. */
export function tlsTransport(id: TlsIdentity): Transport {
  // localAddress belongs at the top level: undici overwrites connect.localAddress with it.
  // One secure context for every connection: building one from PEM text costs about a millisecond each time.
  const secureContext = id.certPem && id.keyPem ? createSecureContext({ ca: id.caPem, cert: id.certPem, key: id.keyPem }) : caOnlyContext(id.caPem);
  const dispatcher = new Agent({
    connect: { secureContext },
    ...(id.localAddress ? { localAddress: id.localAddress } : {}),
    keepAliveTimeout: 30_000,
  });
  return { fetch: undiciFetch as unknown as typeof fetch, init: { dispatcher }, dispatcher, close: () => dispatcher.close() };
}

/**
 * Secure contexts that trust a CA and present nothing, by the CA's text: a
 * process that joins many nodes at once (`baton sim`) builds one, not one per
 * join. Few CAs are ever seen, so the oldest is dropped past a handful.
 */
const caOnlyContexts = new Map<string, SecureContext>();
function caOnlyContext(caPem: string): SecureContext {
  let ctx = caOnlyContexts.get(caPem);
  if (!ctx) {
    if (caOnlyContexts.size >= 8) caOnlyContexts.delete(caOnlyContexts.keys().next().value!);
    caOnlyContexts.set(caPem, (ctx = createSecureContext({ ca: caPem })));
  }
  return ctx;
}

/** The insecure probe's context, built once: without it every connection would load Node's default root store. */
let insecureContext: SecureContext | undefined;

/**
 * insecureTransport trusts any server certificate. It is used for exactly one
 * call, the join's first fetch of the CA, whose answer is then checked
 * against the fingerprint pinned in the join token before anything is sent.
 */
export function insecureTransport(localAddress?: string): Transport {
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false, secureContext: (insecureContext ??= createSecureContext({})) }, ...(localAddress ? { localAddress } : {}) });
  return { fetch: undiciFetch as unknown as typeof fetch, init: { dispatcher }, dispatcher, close: () => dispatcher.close() };
}

/** withTransport merges a transport (when given) into ApiClient options. */
export function withTransport(o: ClientOptions, t: Transport | undefined): ClientOptions {
  return t ? { ...o, fetch: t.fetch, init: t.init, dispatcher: t.dispatcher } : o;
}
