import { describe, expect, it } from 'vitest';
import { runCli } from './support/process.js';

const ID = (name: string) => `spiffe://demo.local/ns/shop/sa/${name}`;
/** Three base64url segments, as a compact JWS is. */
const JWT_SHAPE = /[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}/;

/** `hopguard demo` as a process, on its embedded defaults (no Redis). */
describe('hopguard demo', () => {
  it('walks the chain, then shows egress: a handle in the application, a token for payments only on the way out, the stolen handle worthless; then a job through a queue: allowed once, replayed, moved, redelivered', async () => {
    const { code, stdout, stderr } = await runCli(['demo']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const line = (what: string) => stdout.split('\n').find((l) => l.includes(what)) ?? `no line "${what}"`;
    // The steps before egress still run as they did.
    expect(line('another workload replays that token')).toContain('DENY 401 binding_mismatch');
    expect(line('frontend, after that leak')).toContain('DENY 401 token_revoked');
    expect(line('frontend asks for a new token')).toContain(': ok');
    expect(line('the same payment token again')).toContain('DENY 401 token_replayed');
    expect(line('frontend calls orders again')).toContain('DENY 401 token_revoked');

    expect(line('orders\' app logs its request headers')).toMatch(/x-hopguard-handle: hgh1\.\S+… \(\d+ chars\); no token in any header$/);
    expect(line('orders\' app calls payments (handle only)'))
      .toContain(`ALLOW     authorization: Bearer (aud: ${ID('payments')}, sub: ${ID('frontend')}, act: ${ID('orders')})`);
    expect(line('payments\' sidecar checks that token')).toContain(`ALLOW     x-hopguard-subject: ${ID('frontend')} (act: ${ID('orders')})`);
    expect(line('the stolen handle at payments\' egress')).toContain('DENY 401 handle_invalid');
    expect(line('the stolen handle as a bearer token')).toContain('DENY 401 malformed_token');

    // A job through a queue: sealed at orders' messages API with the handle, checked at fulfilment's.
    expect(line('orders\' app seals the job (handle only)')).toMatch(/seal  shop\.fulfilment  ok, 900s, for fulfilment, bound to this body$/);
    const consumer = `ALLOW     subject: ${ID('frontend')} (act: ${ID('orders')})`;
    expect(line('fulfilment\'s sidecar checks the job')).toContain(`check shop.fulfilment  ${consumer}`);
    expect(line('fulfilment\'s sidecar checks the job')).not.toContain('redelivered');
    expect(line('the same job published again')).toContain('DENY 401 token_replayed');
    expect(line('its token on another body')).toContain('DENY 401 digest_mismatch');
    expect(line('the broker redelivers the job')).toContain(`check shop.fulfilment  ${consumer}, redelivered`);
    // It shows what a token is for, never a token.
    expect(stdout).not.toMatch(JWT_SHAPE);
  }, 30_000);
});
