/**
 * Join tokens, after Docker Swarm's SWMTKN-1-…: one string an operator copies
 * to a new node that carries both halves of trust. The CA fingerprint lets the
 * agent pin the server's CA on first contact (no trust-on-first-use); the
 * secret lets the server know the agent was given the token, without the
 * secret ever crossing the wire: the agent sends an HMAC over a one-time
 * server nonce and its CSR.
 *
 *   BATON-1-<sha256 of the CA certificate's DER, 64 hex>-<secret, 32 base64url chars>
 *
 * The secret's alphabet includes '-', so the token is parsed by position
 * (fixed-length fields), never by splitting on '-'.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { PkiError } from './certs.js';

const PREFIX = 'BATON';
const VERSION = 1;
const FINGERPRINT = /^[0-9a-f]{64}$/;
const SECRET = /^[A-Za-z0-9_-]{32}$/;
const PROOF = /^[0-9a-f]{64}$/;

/**
 * formatJoinToken builds the token an operator hands to new nodes from the
 * CA fingerprint (certFingerprint of the cluster CA) and a join secret; it
 * refuses malformed parts so that every token it prints parses back.
 */
export function formatJoinToken(caFingerprint: string, secret: string): string {
  const fp = typeof caFingerprint === 'string' ? caFingerprint.toLowerCase() : '';
  if (!FINGERPRINT.test(fp)) throw new PkiError('CA fingerprint must be 64 hex characters (sha256 of the CA certificate)', 'invalid_token');
  if (typeof secret !== 'string' || !SECRET.test(secret)) throw new PkiError('join secret must be 32 base64url characters (as from newJoinSecret)', 'invalid_token');
  return `${PREFIX}-${VERSION}-${fp}-${secret}`;
}

/** newJoinSecret makes a fresh join secret: 24 random bytes (192 bits) in base64url, exactly 32 characters, so rotating a token is one call. */
export function newJoinSecret(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * parseJoinToken splits a token into the CA fingerprint to pin and the secret
 * to prove with. Surrounding whitespace (a pasted newline) is ignored. It
 * throws PkiError invalid_token with a message naming the part that is wrong;
 * the message never contains the secret (nor any unvalidated text of the
 * token), since errors end up in logs.
 */
export function parseJoinToken(token: string): { version: 1; caFingerprint: string; secret: string } {
  const bad = (what: string): never => {
    throw new PkiError(`invalid join token: ${what}`, 'invalid_token');
  };
  if (typeof token !== 'string') return bad('not a string');
  const t = token.trim();
  if (t === '') return bad('it is empty');
  if (!t.startsWith(`${PREFIX}-`)) {
    if (t.startsWith('SWMTKN-')) return bad("it is a Docker Swarm token (SWMTKN-…), not a Baton one (BATON-1-…)");
    return bad(`it must start with "${PREFIX}-" (expected ${PREFIX}-1-<64 hex CA hash>-<32 char secret>)`);
  }
  let rest = t.slice(PREFIX.length + 1);
  const vEnd = rest.indexOf('-');
  const version = vEnd < 0 ? rest : rest.slice(0, vEnd);
  if (!/^\d{1,6}$/.test(version)) return bad('the version after "BATON-" must be a number');
  if (Number(version) !== VERSION) return bad(`version ${Number(version)} is not supported (this Baton reads version ${VERSION}; upgrade Baton or use a newer token)`);
  if (vEnd < 0) return bad('the CA hash and secret are missing after "BATON-1-"');
  rest = rest.slice(vEnd + 1);
  const hEnd = rest.indexOf('-');
  const hash = hEnd < 0 ? rest : rest.slice(0, hEnd);
  if (hEnd < 0) return bad('the secret is missing (expected BATON-1-<64 hex CA hash>-<32 char secret>)');
  if (!/^[0-9a-fA-F]*$/.test(hash)) return bad('the CA hash must be hexadecimal');
  if (hash.length !== 64) return bad(`the CA hash must be 64 hex characters (sha256), got ${hash.length}`);
  const secret = rest.slice(hEnd + 1);
  if (secret.length !== 32) return bad(`the secret must be 32 characters, got ${secret.length}`);
  if (!SECRET.test(secret)) return bad('the secret must contain only base64url characters (A-Z a-z 0-9 - _)');
  return { version: 1, caFingerprint: hash.toLowerCase(), secret };
}

/**
 * joinProof is what an agent sends instead of the secret: HMAC-SHA256 keyed
 * by the join secret over `nonce + "\n" + csrPem`, in lowercase hex. Binding
 * the server's one-time nonce stops replay; binding the CSR stops a
 * man-in-the-middle from swapping in its own key.
 */
export function joinProof(secret: string, nonce: string, csrPem: string): string {
  return createHmac('sha256', secret).update(`${nonce}\n${csrPem}`).digest('hex');
}

/**
 * verifyJoinProof is the server's check of a joinProof, compared in constant
 * time so that the response time does not reveal how much of a guess matched.
 * A proof that is not 64 hex characters is simply false.
 */
export function verifyJoinProof(secret: string, nonce: string, csrPem: string, proof: string): boolean {
  if (typeof proof !== 'string' || !PROOF.test(proof.toLowerCase())) return false;
  const expected = Buffer.from(joinProof(secret, nonce, csrPem), 'hex');
  return timingSafeEqual(expected, Buffer.from(proof.toLowerCase(), 'hex'));
}
