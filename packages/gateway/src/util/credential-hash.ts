/**
 * The one way a credential (an API key or a gateway token) is named where it may not appear: cache and Redis keys,
 * poller keys, log lines. A short, stable, one-way name: the first 22 characters of its sha256 in base64url
 * (132 bits). `credentialTag` is the first 12 of the same, for log lines (`key:<tag>`).
 */
import { createHash } from 'node:crypto';

export function credentialHash(credential: string): string {
  return createHash('sha256').update(credential).digest('base64url').slice(0, 22);
}

export function credentialTag(credential: string): string {
  return credentialHash(credential).slice(0, 12);
}
