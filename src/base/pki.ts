/**
 * The cluster's small PKI, after Docker Swarm and k3s: one self-signed CA per
 * cluster (ECDSA P-256), a serving certificate for the API server, and node
 * certificates issued from agents' CSRs for mutual TLS. Certificates are built
 * with @peculiar/x509 on WebCrypto; checks that must be synchronous (chain,
 * fingerprint, parsing) use node:crypto's X509Certificate, which wraps OpenSSL
 * and so judges a chain the way the TLS stack will.
 *
 * Serial numbers are lowercase hex without padding (32 characters: the first
 * byte is kept in 0x01..0x7f); Node's TLSSocket.getPeerCertificate() reports
 * the same digits in uppercase, so compare serials case-insensitively.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, X509Certificate as NodeX509, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import type * as X509 from '@peculiar/x509';
import { certFingerprint, parseNode, PkiError, sha256hex, validity, verifyChain } from './certs.js';

export { certFingerprint, certValidity, PkiError, verifyChain } from './certs.js';

/**
 * installReflectMetadataShim exists because @peculiar/x509 2.x depends on
 * tsyringe, which refuses to load unless a Reflect metadata polyfill
 * (reflect-metadata, core-js) is already installed. The library never emits
 * design-type metadata, so the few functions tsyringe calls are enough; a real
 * polyfill loaded earlier wins, since nothing is replaced.
 */
function installReflectMetadataShim(): void {
  const R = Reflect as unknown as Record<string, unknown>;
  if (typeof R['getMetadata'] === 'function') return;
  type Key = string | symbol | undefined;
  const store = new WeakMap<object, Map<Key, Map<unknown, unknown>>>();
  const table = (target: object, prop: Key, create: boolean): Map<unknown, unknown> | undefined => {
    let byProp = store.get(target);
    if (!byProp) {
      if (!create) return undefined;
      byProp = new Map();
      store.set(target, byProp);
    }
    let t = byProp.get(prop);
    if (!t && create) {
      t = new Map();
      byProp.set(prop, t);
    }
    return t;
  };
  const getOwn = (k: unknown, target: object, prop?: Key): unknown => table(target, prop, false)?.get(k);
  const hasOwn = (k: unknown, target: object, prop?: Key): boolean => table(target, prop, false)?.has(k) ?? false;
  const has = (k: unknown, target: object, prop?: Key): boolean => {
    for (let o: object | null = target; o; o = Object.getPrototypeOf(o)) if (hasOwn(k, o, prop)) return true;
    return false;
  };
  const get = (k: unknown, target: object, prop?: Key): unknown => {
    for (let o: object | null = target; o; o = Object.getPrototypeOf(o)) if (hasOwn(k, o, prop)) return getOwn(k, o, prop);
    return undefined;
  };
  const define = (k: unknown, v: unknown, target: object, prop?: Key): void => void table(target, prop, true)!.set(k, v);
  const fns: Record<string, unknown> = {
    defineMetadata: define,
    getOwnMetadata: getOwn,
    hasOwnMetadata: hasOwn,
    getMetadata: get,
    hasMetadata: has,
    metadata: (k: unknown, v: unknown) => (target: object, prop?: Key) => define(k, v, target, prop),
  };
  for (const [name, value] of Object.entries(fns)) {
    if (typeof R[name] !== 'function') Object.defineProperty(Reflect, name, { value, writable: true, configurable: true });
  }
}

installReflectMetadataShim();
// Loaded after the shim: a static import would be evaluated before it.
const x509: typeof X509 = await import('@peculiar/x509');
const webcrypto: Crypto = globalThis.crypto;
x509.cryptoProvider.set(webcrypto);

const EC_KEY_ALG: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIG_ALG: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const DAY_MS = 86_400_000;
/** How far a leaf's notBefore is set back when none is given, for clock skew between nodes. */
const SKEW_MS = 5 * 60_000;
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** KeyPairPem is a certificate and its private key as PEM text (the key in PKCS#8), the form that node:tls and files want. */
export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

/** CertInfo is what Baton reads from a certificate: enough to show it, pin it, revoke it (by serial) and decide when to renew it. */
export interface CertInfo {
  /** Lowercase hex, no leading zeros. */
  serial: string;
  commonName: string;
  notBefore: Date;
  notAfter: Date;
  /** sha256 of the DER, lowercase hex (64 characters). */
  fingerprint: string;
  sans: { ips: string[]; dns: string[] };
  isCA: boolean;
  /** From ExtendedKeyUsage, in the order client, server; empty when the extension is absent. */
  usages: ('client' | 'server')[];
}


/**
 * createCA makes the cluster's root of trust on first start: a fresh P-256
 * key and a self-signed certificate (basicConstraints CA:true pathlen 0,
 * keyCertSign + cRLSign, SubjectKeyIdentifier) valid for `days` (default 3650).
 */
export async function createCA(commonName: string, opts: { days?: number } = {}): Promise<KeyPairPem> {
  checkCommonName(commonName);
  const days = checkDays(opts.days ?? 3650);
  const keys = await newKeyPair();
  const now = wholeSecond(new Date());
  const notBefore = new Date(now.getTime() - SKEW_MS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: newSerial(),
    name: [{ CN: [commonName] }],
    notBefore,
    notAfter: new Date(now.getTime() + days * DAY_MS),
    signingAlgorithm: SIG_ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: pem(cert.toString('pem')), keyPem: await exportKeyPem(keys.privateKey) };
}


/** certInfo decodes the fields Baton shows and acts on (serial, names, validity, CA flag, usages) without verifying anything. */
export function certInfo(certPem: string): CertInfo {
  const node = parseNode(certPem);
  let cert: X509.X509Certificate;
  try {
    cert = new x509.X509Certificate(node.raw);
  } catch (e) {
    throw new PkiError(`certificate cannot be decoded: ${(e as Error).message}`, 'invalid_cert');
  }
  const ips: string[] = [];
  const dns: string[] = [];
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  for (const n of san?.names.items ?? []) {
    if (n.type === 'ip') ips.push(normalizeIp(n.value));
    else if (n.type === 'dns') dns.push(n.value);
  }
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  const ekus = new Set((eku?.usages ?? []).map(String));
  const usages: ('client' | 'server')[] = [];
  if (ekus.has(OID_CLIENT_AUTH)) usages.push('client');
  if (ekus.has(OID_SERVER_AUTH)) usages.push('server');
  return {
    serial: normalizeSerial(cert.serialNumber),
    commonName: cert.subjectName.getField('CN')[0] ?? '',
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    fingerprint: sha256hex(node.raw),
    sans: { ips, dns },
    isCA: cert.getExtension(x509.BasicConstraintsExtension)?.ca ?? false,
    usages,
  };
}

/**
 * generateKeyAndCsr is the agent's half of joining: a fresh P-256 key that
 * never leaves the node, and a CSR (signed by that key) to send to the server.
 */
export async function generateKeyAndCsr(commonName: string): Promise<{ keyPem: string; csrPem: string }> {
  checkCommonName(commonName);
  const keys = await newKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: [{ CN: [commonName] }], keys, signingAlgorithm: SIG_ALG });
  return { keyPem: await exportKeyPem(keys.privateKey), csrPem: pem(csr.toString('pem')) };
}

/**
 * csrInfo reads a CSR's common name and whether its self-signature verifies,
 * so the server can log or refuse a request before signing; it throws
 * PkiError invalid_csr only when the text is not a CSR at all.
 */
export async function csrInfo(csrPem: string): Promise<{ commonName: string; valid: boolean }> {
  const csr = parseCsr(csrPem);
  return { commonName: csr.subjectName.getField('CN')[0] ?? '', valid: await csrVerifies(csr) };
}

/**
 * signCsr issues a node certificate from an agent's CSR. Only the CSR's
 * public key is taken: the subject is opts.commonName (the server decides who
 * the node is), and no requested extension is copied. It refuses (PkiError
 * invalid_csr) a CSR whose signature does not verify or whose key is not
 * P-256. The certificate gets a random serial, KeyUsage digitalSignature,
 * ExtendedKeyUsage per usage, the given IP/DNS SANs, AKI/SKI and CA:false;
 * it is valid from opts.notBefore (default now minus 5 minutes for clock
 * skew) until opts.notBefore or now plus `days` (default 90), never past the
 * CA's own notAfter.
 */
export async function signCsr(
  ca: KeyPairPem,
  csrPem: string,
  opts: { commonName: string; usage: 'client' | 'server' | 'both'; ips?: string[]; dns?: string[]; days?: number; notBefore?: Date },
): Promise<{ certPem: string; serial: string; notAfter: Date }> {
  const csr = parseCsr(csrPem);
  if (!(await csrVerifies(csr))) throw new PkiError('CSR signature does not verify (corrupted or tampered request)', 'invalid_csr');
  const spki = csr.publicKey.rawData;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch (e) {
    throw new PkiError(`CSR public key cannot be read: ${(e as Error).message}`, 'invalid_csr');
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new PkiError(`CSR key must be ECDSA P-256 (got ${key.asymmetricKeyType}${key.asymmetricKeyDetails?.namedCurve ? ` ${key.asymmetricKeyDetails.namedCurve}` : ''})`, 'invalid_csr');
  }
  return issue(await loadCa(ca), spki, opts);
}

/**
 * createServingCert makes the API server's TLS certificate (CN
 * "baton-server", serverAuth only) with a fresh key, signed by the cluster
 * CA; its IP and DNS SANs are the addresses agents and the CLI dial, which
 * TLS checks against. Valid 365 days by default, like k3s's serving certs.
 */
export async function createServingCert(ca: KeyPairPem, opts: { ips: string[]; dns: string[]; days?: number }): Promise<KeyPairPem> {
  const loaded = await loadCa(ca);
  const keys = await newKeyPair();
  const spki = await webcrypto.subtle.exportKey('spki', keys.publicKey);
  const { certPem } = await issue(loaded, spki, { commonName: 'baton-server', usage: 'server', ips: opts.ips, dns: opts.dns, days: opts.days ?? 365 });
  return { certPem, keyPem: await exportKeyPem(keys.privateKey) };
}

/**
 * createClientCert issues a client-only certificate (the server's identity
 * when it calls an agent's listener), valid `days` (default 365).
 */
export async function createClientCert(ca: KeyPairPem, commonName: string, days = 365): Promise<KeyPairPem> {
  const loaded = await loadCa(ca);
  const keys = await newKeyPair();
  const spki = await webcrypto.subtle.exportKey('spki', keys.publicKey);
  const { certPem } = await issue(loaded, spki, { commonName, usage: 'client', days });
  return { certPem, keyPem: await exportKeyPem(keys.privateKey) };
}


interface LoadedCa {
  cert: X509.X509Certificate;
  signingKey: CryptoKey;
  keyId: string;
}

interface IssueOpts {
  commonName: string;
  usage: 'client' | 'server' | 'both';
  ips?: string[];
  dns?: string[];
  days?: number;
  notBefore?: Date;
}

async function issue(ca: LoadedCa, spki: ArrayBuffer, opts: IssueOpts): Promise<{ certPem: string; serial: string; notAfter: Date }> {
  checkCommonName(opts.commonName);
  if (opts.usage !== 'client' && opts.usage !== 'server' && opts.usage !== 'both') {
    throw new PkiError(`usage must be 'client', 'server' or 'both' (got ${JSON.stringify(opts.usage)})`, 'invalid_usage');
  }
  const days = checkDays(opts.days ?? 90);
  const ips = [...new Set((opts.ips ?? []).map(checkIp))];
  const dns = [...new Set((opts.dns ?? []).map(checkDns))];
  if (opts.notBefore && Number.isNaN(opts.notBefore.getTime())) throw new PkiError('notBefore is not a valid date', 'invalid_validity');
  const base = wholeSecond(opts.notBefore ?? new Date());
  const notBefore = opts.notBefore ? base : new Date(base.getTime() - SKEW_MS);
  let notAfter = new Date(base.getTime() + days * DAY_MS);
  if (notAfter > ca.cert.notAfter) notAfter = ca.cert.notAfter;
  const ekus = [...(opts.usage !== 'server' ? [OID_CLIENT_AUTH] : []), ...(opts.usage !== 'client' ? [OID_SERVER_AUTH] : [])];
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(ekus, false),
    new x509.AuthorityKeyIdentifierExtension(ca.keyId, false),
    await x509.SubjectKeyIdentifierExtension.create(spki),
  ];
  if (ips.length + dns.length > 0) {
    extensions.push(new x509.SubjectAlternativeNameExtension([...ips.map((value) => ({ type: 'ip' as const, value })), ...dns.map((value) => ({ type: 'dns' as const, value }))], false));
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: newSerial(),
    subject: [{ CN: [opts.commonName] }],
    issuer: ca.cert.subjectName,
    notBefore,
    notAfter,
    signingAlgorithm: SIG_ALG,
    publicKey: spki,
    signingKey: ca.signingKey,
    extensions,
  });
  return { certPem: pem(cert.toString('pem')), serial: normalizeSerial(cert.serialNumber), notAfter: cert.notAfter };
}

/**
 * Loaded CAs by their PEM text: parsing the CA and importing its key cost
 * more than signing, and a server signs with one CA for thousands of joins.
 * Only successful loads are kept; the expiry is checked at every use.
 */
const loadedCas = new Map<string, LoadedCa>();
const LOADED_CAS_MAX = 8;

async function loadCa(ca: KeyPairPem): Promise<LoadedCa> {
  const id = `${ca.certPem}\0${ca.keyPem}`;
  let loaded = loadedCas.get(id);
  if (!loaded) {
    loaded = await readCa(ca);
    if (loadedCas.size >= LOADED_CAS_MAX) loadedCas.delete(loadedCas.keys().next().value!);
    loadedCas.set(id, loaded);
  }
  if (loaded.cert.notAfter.getTime() < Date.now()) throw new PkiError(`CA certificate expired at ${loaded.cert.notAfter.toISOString()}`, 'ca_expired');
  return loaded;
}

async function readCa(ca: KeyPairPem): Promise<LoadedCa> {
  const node = parseNode(ca.certPem);
  if (!node.ca) throw new PkiError('CA certificate is not a CA (basicConstraints CA:false or missing)', 'invalid_cert');
  let key: KeyObject;
  try {
    key = createPrivateKey(ca.keyPem);
  } catch {
    // The key's text is never echoed.
    throw new PkiError('CA key is not a readable PEM private key', 'invalid_key');
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new PkiError('CA key must be ECDSA P-256', 'invalid_key');
  }
  if (!node.checkPrivateKey(key)) throw new PkiError('CA key does not belong to the CA certificate', 'ca_key_mismatch');
  const cert = new x509.X509Certificate(node.raw);
  const der = key.export({ type: 'pkcs8', format: 'der' });
  const signingKey = await webcrypto.subtle.importKey('pkcs8', der, EC_KEY_ALG, false, ['sign']);
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyId = ski?.keyId ?? Buffer.from(await cert.publicKey.getKeyIdentifier()).toString('hex');
  return { cert, signingKey, keyId };
}


function parseCsr(csrPem: string): X509.Pkcs10CertificateRequest {
  if (typeof csrPem !== 'string' || !/-----BEGIN (NEW )?CERTIFICATE REQUEST-----/.test(csrPem)) {
    throw new PkiError('not a PEM certificate request (no BEGIN CERTIFICATE REQUEST line)', 'invalid_csr');
  }
  try {
    return new x509.Pkcs10CertificateRequest(csrPem.replace(/(BEGIN|END) NEW CERTIFICATE REQUEST/g, '$1 CERTIFICATE REQUEST'));
  } catch (e) {
    throw new PkiError(`certificate request cannot be decoded: ${(e as Error).message}`, 'invalid_csr');
  }
}

async function csrVerifies(csr: X509.Pkcs10CertificateRequest): Promise<boolean> {
  try {
    return await csr.verify();
  } catch {
    return false; // a mangled signature value or key fails to decode inside verify
  }
}

/** validity reads a certificate's notBefore and notAfter from OpenSSL's text ("Nov 27 16:00:00 2026 GMT"; whole seconds, as certificates hold them). */

async function newKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_KEY_ALG, true, ['sign', 'verify']);
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  return pem(x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY'));
}

/** 16 random bytes, the first in 0x01..0x7f so the DER integer is positive and minimal and the hex is always 32 characters. */
function newSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) || 0x01;
  return b.toString('hex');
}

function normalizeSerial(hex: string): string {
  return hex.toLowerCase().replace(/^(00)+(?=.)/, '');
}

function checkCommonName(cn: string): void {
  if (typeof cn !== 'string' || cn.length === 0 || cn.length > 64 || /[\u0000-\u001f\u007f]/.test(cn)) {
    throw new PkiError('common name must be 1 to 64 characters with no control characters', 'invalid_name');
  }
}

function checkDays(days: number): number {
  if (typeof days !== 'number' || !Number.isFinite(days) || days <= 0) throw new PkiError(`days must be a positive number (got ${String(days)})`, 'invalid_validity');
  return days;
}

function checkIp(ip: string): string {
  if (typeof ip !== 'string' || isIP(ip) === 0) throw new PkiError(`IP SAN ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`, 'invalid_san');
  return normalizeIp(ip);
}

const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;
function checkDns(name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 253 || !name.split('.').every((l) => DNS_LABEL.test(l))) {
    throw new PkiError(`DNS SAN ${JSON.stringify(name)} is not a host name`, 'invalid_san');
  }
  return name.toLowerCase();
}

/** Canonical text for an IP: IPv6 compressed and lowercase, as Node's URL parser writes it. */
function normalizeIp(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return ip.toLowerCase();
  }
}

function wholeSecond(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}


function pem(text: string): string {
  const t = text.replace(/\r\n/g, '\n').trim();
  return `${t}\n`;
}
