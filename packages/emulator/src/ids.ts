import { createHash, randomBytes } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Random base62 string (rejection sampling, so every character is equally likely). */
export function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248) out += ALPHABET[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

/** Base62 digits of a byte string, `length` characters long (for ids derived from a hash). */
function base62FromBytes(bytes: Uint8Array, length: number): string {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = '';
  for (let i = 0; i < length; i++) {
    out += ALPHABET[Number(n % 62n)];
    n /= 62n;
  }
  return out;
}

// The shapes OpenAI uses today.
export const newFileId = () => `file-${randomBase62(22)}`;
export const newJobId = () => `ftjob-${randomBase62(24)}`;
export const newEventId = () => `ftevent-${randomBase62(24)}`;
export const newCheckpointId = () => `ftckpt_${randomBase62(24)}`;
/** The 8-character tail of a fine-tuned model or checkpoint name (`ft:…:9uJPbR69`). */
export const newModelTag = () => randomBase62(8);

/**
 * A stable organization id for an API key: a one-way hash, so the key itself never appears anywhere.
 * A domain prefix keeps the hash from being reusable as a plain SHA-256 of the key.
 */
export function organizationIdForKey(apiKey: string): string {
  const digest = createHash('sha256').update('finetune-emulator/org\0').update(apiKey).digest();
  return `org-${base62FromBytes(digest, 24)}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);
