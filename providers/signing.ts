import crypto from 'node:crypto';

/**
 * Request-signing primitives shared by the exchange providers. Each provider builds its
 * vendor's prehash string and tests its signatures in its own test file.
 */

export function hmacSha256Hex(secret: string, message: string): string {
  return crypto.createHmac('sha256', secret).update(message, 'utf8').digest('hex');
}

export function hmacSha256Base64(secret: string, message: string): string {
  return crypto.createHmac('sha256', secret).update(message, 'utf8').digest('base64');
}

export function hmacSha512Hex(secret: string, message: string): string {
  return crypto.createHmac('sha512', secret).update(message, 'utf8').digest('hex');
}

export function sha512Hex(message: string): string {
  return crypto.createHash('sha512').update(message, 'utf8').digest('hex');
}

/** Compares two signatures in constant time; false when their lengths differ. */
export function signaturesEqual(left: string, right: string): boolean {
  const a = Buffer.from(left);
  const b = Buffer.from(right);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}
