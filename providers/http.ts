import { ProviderError } from './contract';

/**
 * One HTTP call to a vendor API with the failures every provider shares mapped to
 * ProviderError: network errors and 5xx are transient, 429 is rate-limited with the delay from
 * Retry-After, 401 is authentication and 403 permission. Vendors that report errors inside a
 * 200 response (Bybit's retCode, OKX's code) check the parsed body themselves; those whose
 * error statuses carry a more precise code pass `describeError`.
 */

/** Delay used when a 429 response has no Retry-After header; an estimate, long enough for a burst to pass. */
const defaultRetryAfterMs = 5_000;
const defaultTimeoutMs = 30_000;

export interface VendorRequest {
  provider: string;
  /** Contract operation, such as createKey; goes into the error details. */
  operation: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  headers?: Record<string, string>;
  /** Raw body text; the caller signs exactly these bytes. */
  body?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Delay after a 429 without Retry-After; vendors whose limits count short windows pass a shorter one. */
  defaultRetryAfterMs?: number;
  /**
   * Maps an error response (HTTP 4xx or 5xx) before the shared mapping, for vendors whose body
   * contains a more precise code than the status, such as a rate-limit code under HTTP 401, or
   * whose headers give the rate-limit delay. Returning undefined keeps the shared mapping.
   */
  describeError?: (status: number, json: unknown, headers: Headers) => ProviderError | undefined;
  /**
   * Resolves for every HTTP status, for vendors whose error mapping needs another request (such
   * as Datadog's 403 for both a bad key and a missing permission). Only network failures throw.
   */
  returnErrorResponses?: boolean;
}

export interface VendorResponse {
  status: number;
  headers: Headers;
  /** Parsed JSON body, or undefined when the body is empty or not JSON. */
  json: unknown;
}

/** Sends the request; resolves for 2xx and 4xx other than 401, 403 and 429, which the caller inspects. */
export async function sendVendorRequest(request: VendorRequest): Promise<VendorResponse> {
  const signals = [AbortSignal.timeout(request.timeoutMs ?? defaultTimeoutMs)];
  if (request.signal) {
    signals.push(request.signal);
  }
  const target = `${request.method} ${new URL(request.url).pathname}`;

  let response: Response;
  try {
    response = await fetch(request.url, { method: request.method, headers: request.headers, body: request.body, signal: AbortSignal.any(signals) });
  } catch (error) {
    throw new ProviderError('transient', `${request.provider} ${target} failed: ${networkFailureReason(error)}. Rotor retries it.`, details(request));
  }

  const text = await response.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }

  if (request.returnErrorResponses) {
    return { status: response.status, headers: response.headers, json };
  }
  if (response.status >= 400 && request.describeError) {
    const described = request.describeError(response.status, json, response.headers);
    if (described) {
      throw described;
    }
  }
  if (response.status === 429) {
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after')) ?? request.defaultRetryAfterMs ?? defaultRetryAfterMs;
    throw new ProviderError('rate-limited', `${request.provider} rate-limited ${target}; retrying in ${Math.ceil(retryAfterMs / 1000)} s.`, {
      ...details(request),
      retryAfterMs,
      vendorCode: 'HTTP 429',
    });
  }
  if (response.status === 401) {
    throw new ProviderError('authentication', `${request.provider} rejected the credential for ${target} (HTTP 401).`, { ...details(request), vendorCode: 'HTTP 401' });
  }
  if (response.status === 403) {
    throw new ProviderError('permission', `${request.provider} denied ${target} (HTTP 403): the credential lacks the permission.`, { ...details(request), vendorCode: 'HTTP 403' });
  }
  if (response.status >= 500) {
    throw new ProviderError('transient', `${request.provider} ${target} failed with HTTP ${response.status}. Rotor retries it.`, { ...details(request), vendorCode: `HTTP ${response.status}` });
  }
  return { status: response.status, headers: response.headers, json };
}

/** Parses Retry-After as seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value === null || value.trim() === '') {
    return undefined;
  }
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) {
    return seconds * 1000;
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function networkFailureReason(error: unknown): string {
  if (!(error instanceof Error)) {
    return String(error);
  }
  if (error.name === 'TimeoutError') {
    return 'timed out';
  }
  if (error.name === 'AbortError') {
    return 'cancelled';
  }
  return (error.cause as { code?: string } | undefined)?.code ?? error.message;
}

function details(request: VendorRequest) {
  return { provider: request.provider, operation: request.operation };
}
