/**
 * Certificates as Node's own crypto reads them (no ASN.1 library): parse a
 * PEM certificate, its fingerprint and validity, and whether it chains to a
 * CA. An agent needs only these at start; making keys, requests and
 * certificates (pki.ts, @peculiar/x509) it loads when it joins or renews.
 */
import { createHash, X509Certificate as NodeX509 } from 'node:crypto';

/** PkiError is a refused PKI operation with a stable code (invalid_csr, invalid_cert, invalid_key, ca_key_mismatch, …) that callers map to an API error. */
export class PkiError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'PkiError';
  }
}

/**
 * Parsed certificates by their PEM text, a few at a time: the same CA is
 * parsed at every join check and chain check (thousands in `baton sim`).
 * X509Certificate objects never change, so sharing one is safe.
 */
const parsed = new Map<string, NodeX509>();
const PARSED_MAX = 16;

export function parseNode(certPem: string): NodeX509 {
  if (typeof certPem !== 'string' || !certPem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new PkiError('not a PEM certificate (no BEGIN CERTIFICATE line)', 'invalid_cert');
  }
  let c = parsed.get(certPem);
  if (c) return c;
  try {
    c = new NodeX509(certPem);
  } catch (e) {
    throw new PkiError(`certificate cannot be decoded: ${(e as Error).message}`, 'invalid_cert');
  }
  if (parsed.size >= PARSED_MAX) parsed.delete(parsed.keys().next().value!);
  parsed.set(certPem, c);
  return c;
}

export function validity(c: NodeX509): { notBefore: Date; notAfter: Date } {
  const notBefore = new Date(Date.parse(c.validFrom));
  const notAfter = new Date(Date.parse(c.validTo));
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) throw new PkiError(`certificate validity cannot be read (${c.validFrom} to ${c.validTo})`, 'invalid_cert');
  return { notBefore, notAfter };
}

export function sha256hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * certFingerprint is the sha256 of a certificate's DER in lowercase hex: the
 * value a join token pins the CA by, and what `openssl x509 -fingerprint
 * -sha256` shows (without colons).
 */
export function certFingerprint(certPem: string): string {
  return sha256hex(parseNode(certPem).raw);
}

/** certValidity: when a certificate starts and stops being valid. */
export function certValidity(certPem: string): { notBefore: Date; notAfter: Date } {
  return validity(parseNode(certPem));
}

/**
 * verifyChain checks a leaf against the cluster CA the way OpenSSL would
 * (issuer name and AKI/SKI must match, the CA must be a CA, the signature must
 * verify, both must be within their validity at `now`), for use outside a TLS
 * handshake: checking a stored or presented certificate, or deciding whether a
 * node must re-join. Synchronous: node:crypto verifies without WebCrypto.
 * Throws PkiError invalid_cert if either text is not a certificate.
 */
export function verifyChain(
  certPem: string,
  caPem: string,
  now: Date = new Date(),
): { ok: true } | { ok: false; reason: 'expired' | 'not_yet_valid' | 'wrong_ca' | 'bad_signature' } {
  const leaf = parseNode(certPem);
  const ca = parseNode(caPem);
  if (!ca.ca || !leaf.checkIssued(ca)) return { ok: false, reason: 'wrong_ca' };
  if (!leaf.verify(ca.publicKey)) return { ok: false, reason: 'bad_signature' };
  const t = now.getTime();
  for (const c of [leaf, ca]) {
    const { notBefore, notAfter } = validity(c);
    if (t < notBefore.getTime()) return { ok: false, reason: 'not_yet_valid' };
    if (t > notAfter.getTime()) return { ok: false, reason: 'expired' };
  }
  return { ok: true };
}
