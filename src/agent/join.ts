/**
 * Joining and staying joined, the agent's half of the cluster PKI:
 *
 * 1. fetch the server's CA once without trusting it, and compare its sha256
 *    with the fingerprint pinned in the join token (refuse on mismatch);
 * 2. from then on trust only that CA: ask for a one-time nonce, make a key
 *    that never leaves this node and a CSR, and prove the token with an HMAC
 *    over the nonce and the CSR (the secret never crosses the wire);
 * 3. keep the signed certificate, the key (0600) and the CA in the data
 *    directory; every later call uses mutual TLS with them;
 * 4. renew the certificate at two thirds of its life, over mutual TLS.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { networkInterfaces } from 'node:os';
import { ApiClient } from '../api/client.js';
import { insecureTransport, tlsTransport, withTransport } from '../api/tls.js';
import { BatonError } from '../base/errors.js';
import { certFingerprint, certValidity, verifyChain } from '../base/certs.js';
import { joinProof, parseJoinToken } from '../base/joinToken.js';

export interface NodeCredentials {
  server: string;
  clusterId: string;
  name: string;
  caPem: string;
  certPem: string;
  keyPem: string;
}

const files = (dataDir: string) => ({
  dir: join(dataDir, 'pki'),
  ca: join(dataDir, 'pki', 'ca.crt'),
  cert: join(dataDir, 'pki', 'node.crt'),
  key: join(dataDir, 'pki', 'node.key'),
  meta: join(dataDir, 'pki', 'cluster.json'),
});

function writeAtomic(path: string, text: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, path);
}

/** loadCredentials reads a previous join from the data directory, or undefined if this node never joined. */
export function loadCredentials(dataDir: string): NodeCredentials | undefined {
  const f = files(dataDir);
  if (![f.ca, f.cert, f.key, f.meta].every(existsSync)) return undefined;
  const meta = JSON.parse(readFileSync(f.meta, 'utf8')) as { server: string; clusterId: string; name: string };
  return { ...meta, caPem: readFileSync(f.ca, 'utf8'), certPem: readFileSync(f.cert, 'utf8'), keyPem: readFileSync(f.key, 'utf8') };
}

export function saveCredentials(dataDir: string, c: NodeCredentials): void {
  const f = files(dataDir);
  mkdirSync(f.dir, { recursive: true, mode: 0o700 });
  writeAtomic(f.key, c.keyPem, 0o600);
  writeAtomic(f.cert, c.certPem, 0o644);
  writeAtomic(f.ca, c.caPem, 0o644);
  writeAtomic(f.meta, JSON.stringify({ server: c.server, clusterId: c.clusterId, name: c.name }) + '\n', 0o600);
}

/** credentialState tells whether stored credentials still work: fine, due for renewal, or expired (a new join is needed). */
export function credentialState(c: NodeCredentials, now = new Date()): 'ok' | 'renew' | 'expired' {
  const v = verifyChain(c.certPem, c.caPem, now);
  if (!v.ok) return 'expired';
  const info = certValidity(c.certPem);
  const life = info.notAfter.getTime() - info.notBefore.getTime();
  return now.getTime() >= info.notBefore.getTime() + (life * 2) / 3 ? 'renew' : 'ok';
}

/** localDialAddress is the node's address when this host owns it (always so in 127.0.0.0/8), so calls come from the node's own address. */
export function localDialAddress(address: string): string | undefined {
  if (/^127\.\d+\.\d+\.\d+$/.test(address)) return address;
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.address === address) return address;
  return undefined;
}

/** joinCluster runs the join handshake and returns the new credentials (not yet saved). */
export async function joinCluster(o: { server: string; token: string; name: string; address: string }): Promise<NodeCredentials> {
  let parsed: ReturnType<typeof parseJoinToken>;
  try {
    parsed = parseJoinToken(o.token);
  } catch (e) {
    throw new BatonError('BATON_ERR_BAD_REQUEST', `--token: ${(e as Error).message}`);
  }
  const server = o.server.replace(/\/+$/, '');
  if (!server.startsWith('https://')) throw new BatonError('BATON_ERR_BAD_REQUEST', `--join ${o.server}: the server URL must start with https://`);

  // 1. The CA, untrusted until its hash matches the token.
  const local = localDialAddress(o.address);
  const probe = insecureTransport(local);
  let caPem: string;
  try {
    const r = await new ApiClient(withTransport({ server, timeoutMs: 10_000 }, probe)).call<{ ca: string }>('GET', '/api/v1/join/ca');
    caPem = r.ca;
  } finally {
    void probe.close();
  }
  let fp = '';
  try {
    fp = certFingerprint(caPem);
  } catch {
    fp = '(not a certificate)';
  }
  if (fp !== parsed.caFingerprint) {
    throw new BatonError(
      'BATON_ERR_TLS',
      `the server at ${server} presents CA sha256:${fp.slice(0, 16)}…, but the join token pins sha256:${parsed.caFingerprint.slice(0, 16)}…: the token is for another cluster, or something between this node and the server is impersonating it; nothing was sent`,
    );
  }

  // 2. Pinned from here on: nonce, CSR, proof.
  const pinned = tlsTransport({ caPem, localAddress: local });
  try {
    const api = new ApiClient(withTransport({ server, timeoutMs: 30_000 }, pinned));
    const { nonce } = await api.call<{ nonce: string }>('POST', '/api/v1/join/nonce', {});
    const { keyPem, csrPem } = await (await import('../base/pki.js')).generateKeyAndCsr(o.name);
    const res = await api.call<{ certificate: string; ca: string; clusterId: string }>('POST', '/api/v1/join', {
      name: o.name,
      address: o.address,
      csr: csrPem,
      nonce,
      proof: joinProof(parsed.secret, nonce, csrPem),
    });
    if (certFingerprint(res.ca) !== parsed.caFingerprint) throw new BatonError('BATON_ERR_TLS', 'the server answered the join with a different CA than it presented; refusing the certificate');
    if (!verifyChain(res.certificate, caPem).ok) throw new BatonError('BATON_ERR_TLS', "the certificate the server issued does not chain to the cluster CA; refusing it");
    return { server, clusterId: res.clusterId, name: o.name, caPem, certPem: res.certificate, keyPem };
  } finally {
    void pinned.close();
  }
}

/** renewCertificate asks for a fresh certificate over mutual TLS with a new key. */
export async function renewCertificate(client: ApiClient, c: NodeCredentials): Promise<NodeCredentials> {
  const { keyPem, csrPem } = await (await import('../base/pki.js')).generateKeyAndCsr(c.name);
  const res = await client.call<{ certificate: string; ca: string }>('POST', `/api/v1/nodes/${encodeURIComponent(c.name)}/certificate`, { csr: csrPem });
  if (!verifyChain(res.certificate, c.caPem).ok) throw new BatonError('BATON_ERR_TLS', 'the renewed certificate does not chain to the cluster CA; keeping the old one');
  return { ...c, certPem: res.certificate, keyPem };
}
