/**
 * The cluster PKI and join tokens through real parts: certificates made by
 * src/base/pki.ts are read back by node:crypto (OpenSSL) and used in a real
 * mutual-TLS handshake between node:https and undici on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Agent, fetch, type buildConnector } from 'undici';
import {
  certFingerprint,
  certInfo,
  createCA,
  createServingCert,
  csrInfo,
  generateKeyAndCsr,
  PkiError,
  signCsr,
  verifyChain,
  type KeyPairPem,
} from '../src/base/pki.js';
import { formatJoinToken, joinProof, newJoinSecret, parseJoinToken, verifyJoinProof } from '../src/base/joinToken.js';

const DAY = 86_400_000;

function pemToDer(pem: string): { tag: string; der: Buffer } {
  const m = /-----BEGIN ([A-Z ]+)-----([\s\S]*?)-----END \1-----/.exec(pem);
  if (!m) throw new Error('not PEM');
  return { tag: m[1]!, der: Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64') };
}

function derToPem(tag: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g)!.join('\n');
  return `-----BEGIN ${tag}-----\n${lines}\n-----END ${tag}-----\n`;
}

/** Flips the lowest bit of the last byte: inside the ECDSA signature's s integer, so the DER stays well-formed. */
function flipLastByte(pem: string): string {
  const { tag, der } = pemToDer(pem);
  der[der.length - 1]! ^= 0x01;
  return derToPem(tag, der);
}

async function rejects(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

let ca: KeyPairPem;
let otherCa: KeyPairPem;
let node: { keyPem: string; csrPem: string };

beforeAll(async () => {
  [ca, otherCa, node] = await Promise.all([createCA('baton-ca'), createCA('baton-ca'), generateKeyAndCsr('node-1')]);
});

describe('createCA', () => {
  it('is a self-signed P-256 CA with a PKCS#8 key that matches it', () => {
    const x = new X509Certificate(ca.certPem);
    expect(x.ca).toBe(true);
    expect(x.checkIssued(x)).toBe(true);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(x.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(true);

    const info = certInfo(ca.certPem);
    expect(info.isCA).toBe(true);
    expect(info.commonName).toBe('baton-ca');
    expect(info.usages).toEqual([]);
    const years = (info.notAfter.getTime() - Date.now()) / DAY / 365;
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
  });

  it('has a stable 64-hex fingerprint equal to OpenSSL sha256 of the DER', () => {
    const fp = certFingerprint(ca.certPem);
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    expect(certFingerprint(ca.certPem)).toBe(fp);
    expect(certInfo(ca.certPem).fingerprint).toBe(fp);
    expect(new X509Certificate(ca.certPem).fingerprint256.replace(/:/g, '').toLowerCase()).toBe(fp);
    expect(certFingerprint(otherCa.certPem)).not.toBe(fp);
  });

  it('refuses text that is not a certificate', () => {
    expect(() => certFingerprint('hello')).toThrow(PkiError);
    expect(() => certInfo(ca.keyPem)).toThrow(expect.objectContaining({ code: 'invalid_cert' }));
  });
});

describe('signCsr', () => {
  it('uses the given common name, SANs and usages, 90 days by default', async () => {
    const csr = await generateKeyAndCsr('evil-admin');
    expect(await csrInfo(csr.csrPem)).toEqual({ commonName: 'evil-admin', valid: true });
    const before = Date.now();
    const signed = await signCsr(ca, csr.csrPem, { commonName: 'node-7', usage: 'both', ips: ['127.0.0.7', '::1'], dns: ['node-7.baton'] });
    const info = certInfo(signed.certPem);
    expect(info.commonName).toBe('node-7');
    expect(info.isCA).toBe(false);
    expect(info.sans).toEqual({ ips: ['127.0.0.7', '::1'], dns: ['node-7.baton'] });
    expect(info.usages).toEqual(['client', 'server']);
    expect(info.serial).toBe(signed.serial);
    expect(info.notAfter.getTime()).toBe(signed.notAfter.getTime());
    expect(Math.abs(signed.notAfter.getTime() - (before + 90 * DAY))).toBeLessThan(5_000);
    expect(info.notBefore.getTime()).toBeLessThan(before); // backdated for clock skew

    const x = new X509Certificate(signed.certPem);
    expect(x.ca).toBe(false);
    expect(x.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(csr.keyPem))).toBe(true); // the CSR's key, not a new one
    expect(x.subjectAltName).toBe('IP Address:127.0.0.7, IP Address:0:0:0:0:0:0:0:1, DNS:node-7.baton');
  });

  it('sets only the requested usage', async () => {
    const client = await signCsr(ca, node.csrPem, { commonName: 'node-1', usage: 'client' });
    const server = await signCsr(ca, node.csrPem, { commonName: 'node-1', usage: 'server', days: 7 });
    expect(certInfo(client.certPem).usages).toEqual(['client']);
    expect(certInfo(client.certPem).sans).toEqual({ ips: [], dns: [] });
    expect(certInfo(server.certPem).usages).toEqual(['server']);
    expect(Math.round((server.notAfter.getTime() - Date.now()) / DAY)).toBe(7);
  });

  it('gives every certificate a unique random 16-byte serial', async () => {
    const serials = await Promise.all(Array.from({ length: 20 }, () => signCsr(ca, node.csrPem, { commonName: 'node-1', usage: 'client' }).then((s) => s.serial)));
    expect(new Set(serials).size).toBe(20);
    for (const s of serials) expect(s).toMatch(/^[0-7][0-9a-f]{31}$/);
  });

  it('refuses a CSR whose signature was tampered with', async () => {
    const bad = flipLastByte(node.csrPem);
    expect((await csrInfo(bad)).valid).toBe(false);
    const err = await rejects(signCsr(ca, bad, { commonName: 'node-1', usage: 'client' }));
    expect(err).toBeInstanceOf(PkiError);
    expect((err as PkiError).code).toBe('invalid_csr');
  });

  it('refuses a CSR whose subject was tampered with', async () => {
    const { tag, der } = pemToDer(node.csrPem);
    const at = der.indexOf('node-1');
    expect(at).toBeGreaterThan(0);
    der.write('node-2', at, 'latin1');
    const bad = derToPem(tag, der);
    expect(await csrInfo(bad)).toEqual({ commonName: 'node-2', valid: false });
    await expect(signCsr(ca, bad, { commonName: 'node-2', usage: 'client' })).rejects.toMatchObject({ name: 'PkiError', code: 'invalid_csr' });
  });

  it('refuses garbage, bad SANs and a key that is not the CA’s', async () => {
    await expect(signCsr(ca, 'not a csr', { commonName: 'x', usage: 'client' })).rejects.toMatchObject({ code: 'invalid_csr' });
    await expect(signCsr(ca, node.csrPem, { commonName: 'x', usage: 'client', ips: ['300.1.1.1'] })).rejects.toMatchObject({ code: 'invalid_san' });
    await expect(signCsr(ca, node.csrPem, { commonName: 'x', usage: 'client', dns: ['bad host'] })).rejects.toMatchObject({ code: 'invalid_san' });
    await expect(signCsr({ certPem: ca.certPem, keyPem: otherCa.keyPem }, node.csrPem, { commonName: 'x', usage: 'client' })).rejects.toMatchObject({ code: 'ca_key_mismatch' });
  });
});

describe('verifyChain', () => {
  it('accepts a certificate issued by the CA', async () => {
    const s = await signCsr(ca, node.csrPem, { commonName: 'node-1', usage: 'client' });
    expect(verifyChain(s.certPem, ca.certPem)).toEqual({ ok: true });
  });

  it('reports expired and not yet valid', async () => {
    const now = Date.now();
    const old = await signCsr(ca, node.csrPem, { commonName: 'node-1', usage: 'client', notBefore: new Date(now - 3 * DAY), days: 1 });
    expect(old.notAfter.getTime()).toBeLessThan(now);
    expect(verifyChain(old.certPem, ca.certPem)).toEqual({ ok: false, reason: 'expired' });

    const future = await signCsr(ca, node.csrPem, { commonName: 'node-1', usage: 'client', notBefore: new Date(now + DAY), days: 1 });
    expect(verifyChain(future.certPem, ca.certPem)).toEqual({ ok: false, reason: 'not_yet_valid' });
    expect(verifyChain(future.certPem, ca.certPem, new Date(now + 1.5 * DAY))).toEqual({ ok: true });
    expect(verifyChain(future.certPem, ca.certPem, new Date(now + 2.5 * DAY))).toEqual({ ok: false, reason: 'expired' });
    // The CA's own validity counts too: nothing verifies before the CA existed.
    expect(verifyChain(future.certPem, ca.certPem, new Date(now - DAY))).toEqual({ ok: false, reason: 'not_yet_valid' });
  });

  it('reports wrong_ca for a certificate from another CA with the same name', async () => {
    const s = await signCsr(otherCa, node.csrPem, { commonName: 'node-1', usage: 'client' });
    expect(verifyChain(s.certPem, ca.certPem)).toEqual({ ok: false, reason: 'wrong_ca' });
    expect(verifyChain(s.certPem, otherCa.certPem)).toEqual({ ok: true });
  });

  it('reports bad_signature for a tampered certificate', async () => {
    const s = await signCsr(ca, node.csrPem, { commonName: 'node-1', usage: 'client' });
    expect(verifyChain(flipLastByte(s.certPem), ca.certPem)).toEqual({ ok: false, reason: 'bad_signature' });
  });
});

describe('mutual TLS over 127.0.0.1', () => {
  const servers: Server[] = [];
  const agents: Agent[] = [];
  let nodeCert: { certPem: string; serial: string };
  let strangerCert: { certPem: string };
  let url: string;
  let port: number;

  async function startServer(serving: KeyPairPem): Promise<number> {
    const server = createServer({ key: serving.keyPem, cert: serving.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const sock = req.socket as TLSSocket;
      res.setHeader('content-type', 'application/json');
      if (!sock.authorized) {
        res.writeHead(401).end(JSON.stringify({ error: String(sock.authorizationError) }));
        return;
      }
      const peer = sock.getPeerCertificate();
      res.end(JSON.stringify({ authorized: sock.authorized, cn: peer.subject.CN, serial: peer.serialNumber }));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  }

  function agent(connect: Partial<buildConnector.BuildOptions>): Agent {
    const a = new Agent({ connect });
    agents.push(a);
    return a;
  }

  beforeAll(async () => {
    const serving = await createServingCert(ca, { ips: ['127.0.0.1'], dns: [] });
    expect(certInfo(serving.certPem)).toMatchObject({ commonName: 'baton-server', usages: ['server'], sans: { ips: ['127.0.0.1'], dns: [] } });
    nodeCert = await signCsr(ca, node.csrPem, { commonName: 'node-1', usage: 'client' });
    strangerCert = await signCsr(otherCa, node.csrPem, { commonName: 'node-1', usage: 'client' });
    port = await startServer(serving);
    url = `https://127.0.0.1:${port}/`;
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    for (const s of servers) s.closeAllConnections();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });

  it('authorizes a client certificate issued by the cluster CA', async () => {
    const res = await fetch(url, { dispatcher: agent({ ca: ca.certPem, cert: nodeCert.certPem, key: node.keyPem }) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { authorized: boolean; cn: string; serial: string };
    expect(body).toEqual({ authorized: true, cn: 'node-1', serial: body.serial });
    expect(body.serial.toLowerCase()).toBe(nodeCert.serial);
  });

  it('does not authorize a client certificate from another CA (401)', async () => {
    const res = await fetch(url, { dispatcher: agent({ ca: ca.certPem, cert: strangerCert.certPem, key: node.keyPem }) });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify/i);
  });

  it('does not authorize a client without a certificate (401)', async () => {
    const res = await fetch(url, { dispatcher: agent({ ca: ca.certPem }) });
    expect(res.status).toBe(401);
  });

  it('fails the handshake when the client does not pin the cluster CA', async () => {
    const err = (await rejects(fetch(url, { dispatcher: agent({ cert: nodeCert.certPem, key: node.keyPem }) }))) as Error & { cause?: { code?: string } };
    // The server sends the CA along (OpenSSL completes the chain from `ca`), so the client sees a self-signed root it does not trust.
    expect(err.cause?.code).toMatch(/^(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$/);
  });

  it('checks the host name against the serving certificate SANs', async () => {
    // "localhost" is dialled at 127.0.0.1 whatever the resolver says, so only the name check differs.
    const lookup = (_host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void) =>
      opts.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4);
    const client = { ca: ca.certPem, cert: nodeCert.certPem, key: node.keyPem, lookup } as Partial<buildConnector.BuildOptions>;

    const err = (await rejects(fetch(`https://localhost:${port}/`, { dispatcher: agent(client) }))) as Error & { cause?: { code?: string } };
    expect(err.cause?.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');

    const withLocalhost = await startServer(await createServingCert(ca, { ips: ['127.0.0.1'], dns: ['localhost'] }));
    const res = await fetch(`https://localhost:${withLocalhost}/`, { dispatcher: agent(client) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { cn: string }).cn).toBe('node-1');
  });
});

describe('join tokens', () => {
  const fp = 'ab'.repeat(32);
  const secret = 'S3cr3t-_S3cr3t-_S3cr3t-_S3cr3t-_'; // 32 chars, with the '-' that base64url allows

  it('round-trips', () => {
    const s = newJoinSecret();
    expect(s).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(newJoinSecret()).not.toBe(s);
    const caFp = certFingerprint(ca.certPem);
    const token = formatJoinToken(caFp, s);
    expect(token).toBe(`BATON-1-${caFp}-${s}`);
    expect(parseJoinToken(token)).toEqual({ version: 1, caFingerprint: caFp, secret: s });
    expect(parseJoinToken(`  ${formatJoinToken(fp, secret)}\n`)).toEqual({ version: 1, caFingerprint: fp, secret });
  });

  it('explains what is wrong without echoing the secret', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      [`SWMTKN-1-${fp}-${secret}`, /Docker Swarm token/],
      [`BTN-1-${fp}-${secret}`, /must start with "BATON-"/],
      [`BATON-2-${fp}-${secret}`, /version 2 is not supported/],
      [`BATON-x-${fp}-${secret}`, /version .* must be a number/],
      [`BATON-1-${fp.slice(1)}-${secret}`, /64 hex characters.*got 63/],
      [`BATON-1-${'zz'.repeat(32)}-${secret}`, /must be hexadecimal/],
      [`BATON-1-${fp}`, /secret is missing/],
      [`BATON-1-${fp}-${secret.slice(1)}`, /secret must be 32 characters, got 31/],
      [`BATON-1-${fp}-${secret.slice(1)}!`, /only base64url characters/],
    ];
    for (const [token, message] of cases) {
      let err: unknown;
      try {
        parseJoinToken(token);
      } catch (e) {
        err = e;
      }
      expect(err, token).toBeInstanceOf(PkiError);
      expect((err as PkiError).code).toBe('invalid_token');
      expect((err as PkiError).message).toMatch(message);
      expect((err as PkiError).message).not.toContain('S3cr3t');
    }
    expect(() => formatJoinToken('abc', secret)).toThrow(PkiError);
    expect(() => formatJoinToken(fp, 'short')).toThrow(PkiError);
  });

  it('proves possession of the secret for one nonce and one CSR', async () => {
    const other = await generateKeyAndCsr('node-2');
    const proof = joinProof(secret, 'nonce-1', node.csrPem);
    expect(proof).toMatch(/^[0-9a-f]{64}$/);
    expect(verifyJoinProof(secret, 'nonce-1', node.csrPem, proof)).toBe(true);
    expect(verifyJoinProof(secret, 'nonce-1', node.csrPem, proof.toUpperCase())).toBe(true);
    expect(verifyJoinProof(secret, 'nonce-2', node.csrPem, proof)).toBe(false);
    expect(verifyJoinProof(secret, 'nonce-1', other.csrPem, proof)).toBe(false);
    expect(verifyJoinProof(newJoinSecret(), 'nonce-1', node.csrPem, proof)).toBe(false);
    expect(verifyJoinProof(secret, 'nonce-1', node.csrPem, proof.slice(2))).toBe(false);
    expect(verifyJoinProof(secret, 'nonce-1', node.csrPem, 'zz' + proof.slice(2))).toBe(false);
  });
});
