import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ProviderError } from '../../providers/contract';
import { sendVendorRequest, type VendorRequest } from '../../providers/http';

// Response of the test server for each path.
const responses: Record<string, { status: number; headers?: Record<string, string>; body?: string }> = {
  '/ok': { status: 200, body: '{"ok":true}' },
  '/bad-request': { status: 400, body: '{"code":"1"}' },
  '/rate-limited': { status: 429, headers: { 'Retry-After': '7' } },
  '/rate-limited-no-header': { status: 429 },
  '/unauthorized': { status: 401, body: '{"code":"TOO_MANY_REQUESTS"}' },
  '/forbidden': { status: 403 },
  '/unavailable': { status: 503 },
};

let server: http.Server;
let baseUrl: string;

before(async () => {
  server = http.createServer((request, response) => {
    const configured = responses[request.url ?? ''] ?? { status: 404 };
    response.writeHead(configured.status, { 'Content-Type': 'application/json', ...configured.headers });
    response.end(configured.body ?? '');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function request(path: string, extra: Partial<VendorRequest> = {}): Promise<unknown> {
  return sendVendorRequest({ provider: 'example', operation: 'listKeys', method: 'GET', url: `${baseUrl}${path}`, ...extra });
}

async function failure(path: string, extra: Partial<VendorRequest> = {}): Promise<ProviderError> {
  try {
    await request(path, extra);
  } catch (error) {
    assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
    return error;
  }
  assert.fail(`${path} resolved; expected a ProviderError`);
}

describe('sendVendorRequest', () => {
  it('2xx resolves with parsed body', async () => {
    const response = await request('/ok');

    assert.deepEqual((response as { json: unknown }).json, { ok: true });
  });

  it('other 4xx resolves for the provider', async () => {
    const response = (await request('/bad-request')) as { status: number; json: unknown };

    assert.equal(response.status, 400);
    assert.deepEqual(response.json, { code: '1' });
  });

  it('429 waits for Retry-After', async () => {
    const error = await failure('/rate-limited');

    assert.equal(error.kind, 'rate-limited');
    assert.equal(error.details.retryAfterMs, 7_000);
  });

  it('429 without Retry-After uses default', async () => {
    const error = await failure('/rate-limited-no-header', { defaultRetryAfterMs: 1_500 });

    assert.equal(error.details.retryAfterMs, 1_500);
  });

  it('401, 403 and 5xx map by status', async () => {
    assert.equal((await failure('/unauthorized')).kind, 'authentication');
    assert.equal((await failure('/forbidden')).kind, 'permission');
    assert.equal((await failure('/unavailable')).kind, 'transient');
  });

  it('describeError maps by body code', async () => {
    const describeError = (status: number, json: unknown): ProviderError | undefined =>
      (json as { code?: string } | undefined)?.code === 'TOO_MANY_REQUESTS'
        ? new ProviderError('rate-limited', `example returned TOO_MANY_REQUESTS with HTTP ${status}`, { provider: 'example', operation: 'listKeys', retryAfterMs: 2_000 })
        : undefined;

    const described = await failure('/unauthorized', { describeError });
    const fallback = await failure('/forbidden', { describeError });

    assert.equal(described.kind, 'rate-limited');
    assert.equal(described.message, 'example returned TOO_MANY_REQUESTS with HTTP 401');
    assert.equal(fallback.kind, 'permission');
  });

  it('returnErrorResponses resolves every status', async () => {
    const response = (await request('/forbidden', { returnErrorResponses: true })) as { status: number };
    const unavailable = (await request('/unavailable', { returnErrorResponses: true })) as { status: number };

    assert.equal(response.status, 403);
    assert.equal(unavailable.status, 503);
  });

  it('refused connection is transient', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const error = await failure('', { url: `http://127.0.0.1:${port}/` });

    assert.equal(error.kind, 'transient');
    assert.match(error.message, /ECONNREFUSED/);
  });
});
