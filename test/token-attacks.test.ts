import { KeyObject, createHash, createHmac, createPublicKey, createPrivateKey, randomBytes, randomUUID, sign, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvoyClient, type CheckInput, type CheckOutput } from '../src/authz/envoy-client.js';
import { createCa, issueCert, thumbprintOf } from '../src/devkit/pki.js';
import { createSigningKey, type SigningKey } from '../src/devkit/signing-key.js';
import { AUDIENCE, CHECKOUT, ISSUER, authzConfig, createFixtures, startServer, type Fixtures, type Running } from './support/harness.js';

// Every attack goes through the real gRPC API with checkout's certificate and principal on a
// route checkout may use (GET /orders/…, scope orders:read): only the token is wrong.

let fixtures: Fixtures;
let running: Running;
let attacker: SigningKey;
let keyServer: Server;
let keyServerUrl: string;
let keyServerRequests = 0;

const ORDERS = '/orders/42';
const now = () => Math.floor(Date.now() / 1000);
const b64 = (data: string | Buffer) => Buffer.from(data).toString('base64url');
const json = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

/** The protected header a real issuer sends, with overrides (undefined drops a member). */
const header = (extra: Record<string, unknown> = {}) => ({ alg: 'ES256', kid: fixtures.key.kid, typ: 'at+jwt', ...extra });

/** Good claims for this audience, bound to checkout's certificate. */
function claims(extra: Record<string, unknown> = {}) {
  const iat = now();
  return {
    iss: ISSUER, aud: AUDIENCE, sub: CHECKOUT, client_id: CHECKOUT, iat, exp: iat + 300, jti: randomUUID(),
    scope: 'orders:read', cnf: { 'x5t#S256': fixtures.checkout.thumbprint }, ...extra,
  };
}

/** A compact JWS over exactly these bytes (objects, JSON text or raw bytes), ES256-signed. */
function jws(head: unknown, payload: unknown, key: CryptoKey | KeyObject = fixtures.key.privateKey): string {
  const input = `${b64(Buffer.isBuffer(head) ? head : json(head))}.${b64(Buffer.isBuffer(payload) ? payload : json(payload))}`;
  const keyObject = key instanceof KeyObject ? key : KeyObject.from(key);
  return `${input}.${sign('sha256', Buffer.from(input), { key: keyObject, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

/** Replaces one segment (0 header, 1 payload, 2 signature) of a compact token. */
function withSegment(token: string, index: number, segment: string): string {
  const parts = token.split('.');
  parts[index] = segment;
  return parts.join('.');
}

function checkAuthorization(authorization: string, extra: Partial<CheckInput> = {}, envoy = running.envoy): Promise<CheckOutput> {
  return envoy.check({
    method: 'GET', path: ORDERS, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem,
    headers: { authorization }, ...extra,
  });
}

const check = (token: string, extra: Partial<CheckInput> = {}, envoy = running.envoy) => checkAuthorization(`Bearer ${token}`, extra, envoy);

/** Denied with exactly this code and status, and the response echoes no part of the token. */
function expectDenied(result: CheckOutput, code: string, httpStatus: number, token: string): void {
  expect(result.allowed).toBe(false);
  expect(result.body?.code).toBe(code);
  expect(result.httpStatus).toBe(httpStatus);
  const body = JSON.parse(String(result.raw.denied_response?.body)) as Record<string, unknown>;
  expect(Object.keys(body).sort()).toEqual(['code', 'error', 'trace_id']);
  expect(body.trace_id).toMatch(/^[0-9a-f]{32}$/);
  const text = `${String(body.error)} ${String(body.code)}`;
  const headers = JSON.stringify(result.headers);
  for (const part of new Set([token, ...token.split('.')])) {
    if (part === '') continue;
    expect(text).not.toContain(part);
    if (part.length >= 16) expect(headers).not.toContain(part);
  }
}

async function expectCode(token: string, code: string, httpStatus = 401, extra: Partial<CheckInput> = {}): Promise<void> {
  expectDenied(await check(token, extra), code, httpStatus, token);
}

async function expectAllowed(token: string): Promise<CheckOutput> {
  const result = await check(token);
  expect(result.body).toBeUndefined();
  expect(result.allowed).toBe(true);
  return result;
}

/** An Envoy client that puts `certificate` into source.certificate exactly as given (not URL-encoded). */
function rawCertificateClient(certificate: string): EnvoyClient {
  const envoy = new EnvoyClient(running.authz.grpcAddress);
  const grpcClient = envoy['client'];
  const send = grpcClient.Check.bind(grpcClient) as (...args: unknown[]) => unknown;
  grpcClient.Check = (message: { attributes: { source: object } }, ...rest: unknown[]) => send({
    ...message, attributes: { ...message.attributes, source: { ...message.attributes.source, certificate } },
  }, ...rest);
  return envoy;
}

beforeAll(async () => {
  fixtures = await createFixtures();
  running = await startServer(authzConfig(fixtures));
  attacker = await createSigningKey('ES256', 'attacker');
  // Where jku / x5u point: it serves the attacker's key, and must never be asked.
  keyServer = createServer((_req, res) => {
    keyServerRequests++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [attacker.publicJwk] }));
  });
  await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve));
  keyServerUrl = `http://127.0.0.1:${(keyServer.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await running?.stop();
  if (keyServer) {
    keyServer.closeAllConnections();
    await new Promise((resolve) => keyServer.close(resolve));
  }
  fixtures?.cleanup();
});

describe('RFC 8725: algorithms and keys', () => {
  it('positive control: a valid token is allowed', async () => {
    await expectAllowed(await fixtures.token());
  });

  it.each(['none', 'None', 'NONE', 'nOnE'])('alg %s with an empty signature', async (alg) => {
    const token = `${b64(json(header({ alg })))}.${b64(json(claims()))}.`;
    await expectCode(token, 'disallowed_algorithm');
  });

  it.each(['none', 'None', 'NONE', 'nOnE'])('alg %s with a junk signature', async (alg) => {
    const token = `${b64(json(header({ alg })))}.${b64(json(claims()))}.${b64(randomBytes(64))}`;
    await expectCode(token, 'disallowed_algorithm');
  });

  it('a valid ES256 token with its signature stripped', async () => {
    await expectCode(withSegment(await fixtures.token(), 2, ''), 'invalid_signature');
  });

  it.each([
    ['the issuer public JWK JSON text', () => JSON.stringify(fixtures.key.publicJwk)],
    ['the issuer public key PEM (SPKI)', () => createPublicKey({ key: fixtures.key.publicJwk as never, format: 'jwk' })
      .export({ type: 'spki', format: 'pem' }) as string],
  ])('HS256 with %s as the HMAC key', async (_name, secret) => {
    const input = `${b64(json(header({ alg: 'HS256' })))}.${b64(json(claims()))}`;
    const token = `${input}.${createHmac('sha256', secret()).update(input).digest('base64url')}`;
    await expectCode(token, 'disallowed_algorithm');
  });

  it('alg RS256, which the issuer does not use (algorithm confusion)', async () => {
    await expectCode(jws(header({ alg: 'RS256' }), claims()), 'disallowed_algorithm');
  });

  it('embedded jwk header of an attacker key, with the issuer kid', async () => {
    const { kty, crv, x, y } = attacker.publicJwk;
    await expectCode(jws(header({ jwk: { kty, crv, x, y } }), claims(), attacker.privateKey), 'invalid_signature');
  });

  it('embedded jwk header of an attacker key, with the attacker kid', async () => {
    const { kty, crv, x, y } = attacker.publicJwk;
    await expectCode(jws(header({ kid: 'attacker', jwk: { kty, crv, x, y } }), claims(), attacker.privateKey), 'unknown_key');
  });

  it('jku and x5u headers pointing at an attacker server are never fetched', async () => {
    await expectCode(jws(header({ jku: `${keyServerUrl}/jwks.json` }), claims(), attacker.privateKey), 'invalid_signature');
    await expectCode(jws(header({ kid: 'attacker', jku: `${keyServerUrl}/jwks.json` }), claims(), attacker.privateKey), 'unknown_key');
    await expectCode(jws(header({ kid: undefined, x5u: `${keyServerUrl}/cert.pem` }), claims(), attacker.privateKey), 'invalid_signature');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(keyServerRequests).toBe(0);
  });

  it('x5c header with an attacker certificate', async () => {
    const dir = path.join(fixtures.dir, 'attacker');
    const cert = issueCert(createCa(dir, 'attacker-ca'), dir, { name: 'sts', dnsSans: ['sts.test.local'] });
    const x5c = [new X509Certificate(cert.certPem).raw.toString('base64')];
    const key = createPrivateKey(cert.keyPem);
    await expectCode(jws(header({ kid: undefined, x5c }), claims(), key), 'invalid_signature');
    await expectCode(jws(header({ x5c }), claims(), key), 'invalid_signature');
  });

  it.each([
    ['path traversal', '../../etc/passwd'],
    ['SQL injection', "' OR 1=1 --"],
    ['a 10 KB value', 'k'.repeat(10 * 1024)],
  ])('kid injection: %s', async (_name, kid) => {
    await expectCode(jws(header({ kid }), claims()), 'unknown_key');
  });

  it.each([['a number', 42], ['null', null], ['an empty string', ''], ['an object', { $ne: '' }]])(
    'kid injection: kid as %s',
    async (_name, kid) => {
      await expectCode(jws(header({ kid }), claims()), 'malformed_token');
    },
  );

  it('psychic signature (CVE-2022-21449): r = s = 0', async () => {
    await expectCode(withSegment(await fixtures.token(), 2, b64(Buffer.alloc(64))), 'invalid_signature');
  });

  it('psychic signature (CVE-2022-21449): r = s = n', async () => {
    const n = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');
    await expectCode(withSegment(await fixtures.token(), 2, b64(Buffer.concat([n, n]))), 'invalid_signature');
  });

  it('a token signed by a key outside the JWKS, with the issuer kid', async () => {
    const impostor = await createSigningKey('ES256', fixtures.key.kid);
    await expectCode(await fixtures.token({}, impostor), 'invalid_signature');
  });

  it('an unknown kid', async () => {
    await expectCode(await fixtures.token({}, attacker), 'unknown_key');
  });

  it('an unknown issuer', async () => {
    await expectCode(await fixtures.token({ iss: 'https://evil.example' }), 'unknown_issuer');
  });
});

describe('RFC 8725: token types and header members', () => {
  it('JWE compact serialization (5 segments)', async () => {
    const token = [b64(json({ alg: 'RSA-OAEP', enc: 'A256GCM', typ: 'at+jwt' })), ...[256, 12, 200, 16].map((n) => b64(randomBytes(n)))].join('.');
    await expectCode(token, 'malformed_token');
  });

  it('nested JWT (cty: JWT)', async () => {
    await expectCode(jws(header({ cty: 'JWT' }), claims()), 'wrong_token_type');
  });

  it('zip: DEF header', async () => {
    await expectCode(jws(header({ zip: 'DEF' }), claims()), 'malformed_token');
  });

  it('crit: ["exp"]', async () => {
    await expectCode(jws(header({ crit: ['exp'], exp: now() + 300 }), claims()), 'malformed_token');
  });

  it('b64: false', async () => {
    await expectCode(jws(header({ b64: false }), claims()), 'malformed_token');
  });

  it.each([['missing', undefined], ['JWT', 'JWT'], ['dpop+jwt', 'dpop+jwt'], ['jwt', 'jwt'], ['at+jwt with a parameter', 'at+jwt; x=1']])(
    'typ %s',
    async (_name, typ) => {
      await expectCode(jws(header({ typ }), claims()), 'wrong_token_type');
    },
  );

  it.each(['AT+JWT', 'application/at+jwt'])('positive control: typ %s is allowed', async (typ) => {
    await expectAllowed(await fixtures.token({ header: { typ } }));
  });
});

describe('malformed tokens and requests', () => {
  it('duplicate member in the payload: "sub" twice', async () => {
    // JSON.parse keeps the last "sub", so without the duplicate check this token would pass.
    await expectCode(jws(header(), json(claims()).replace('{', '{"sub":"a",')), 'malformed_token');
  });

  it.each([['ES256', 'none'], ['none', 'ES256']])('duplicate member in the header: {"alg":"%s","alg":"%s"}', async (first, second) => {
    await expectCode(jws(`{"alg":"${first}","alg":"${second}",${json(header({ alg: undefined })).slice(1)}`, claims()), 'malformed_token');
  });

  it('escaped duplicate member: "sub" and "s\\u0075b"', async () => {
    await expectCode(jws(header(), json(claims()).replace('{', '{"s\\u0075b":"a",')), 'malformed_token');
  });

  it('base64url with "=" padding on the signature', async () => {
    const token = await fixtures.token();
    const signature = token.split('.')[2]!;
    expect(signature.length % 4).not.toBe(0);
    await expectCode(`${token}${'='.repeat(4 - (signature.length % 4))}`, 'malformed_token');
  });

  it('base64url with "=" padding on the payload (not a b64token: refused as a malformed request)', async () => {
    // A jti one or two characters longer moves the payload off a multiple of 3 bytes.
    let token = await fixtures.token();
    for (let extra = 1; token.split('.')[1]!.length % 4 === 0; extra++) token = await fixtures.token({ jti: `${'j'.repeat(extra)}${randomUUID()}` });
    const payload = token.split('.')[1]!;
    const broken = withSegment(token, 1, `${payload}${'='.repeat(4 - (payload.length % 4))}`);
    expectDenied(await check(broken), 'malformed_request', 400, broken);
  });

  it('non-canonical base64url: stray low bits in the last character', async () => {
    const token = await fixtures.token();
    const signature = token.split('.')[2]!;
    // 64 bytes: the last character carries 2 bits of data and 4 unused ones.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(signature.at(-1)!);
    const stray = `${signature.slice(0, -1)}${alphabet[last | 1]}`;
    expect(Buffer.from(stray, 'base64url').equals(Buffer.from(signature, 'base64url'))).toBe(true);
    await expectCode(withSegment(token, 2, stray), 'malformed_token');
  });

  it('standard-alphabet characters "+" and "/" instead of "-" and "_"', async () => {
    let token = await fixtures.token();
    while (!/[-_]/.test(token)) token = await fixtures.token();
    await expectCode(token.replace(/-/g, '+').replace(/_/g, '/'), 'malformed_token');
  });

  it.each([['a space', ' '], ['a tab', '\t'], ['a newline', '\n']])('whitespace inside the token: %s (malformed request)', async (_name, space) => {
    const token = await fixtures.token();
    const broken = `${token.slice(0, 20)}${space}${token.slice(20)}`;
    expectDenied(await check(broken), 'malformed_request', 400, broken);
  });

  it('garbage token "abc"', async () => {
    await expectCode('abc', 'malformed_token');
  });

  it('empty Bearer', async () => {
    expectDenied(await checkAuthorization('Bearer '), 'malformed_request', 400, '');
  });

  it('a 64 KiB token (header too long: malformed request)', async () => {
    const token = `${(await fixtures.token()).split('.').slice(0, 2).join('.')}.${'A'.repeat(64 * 1024)}`;
    expectDenied(await check(token), 'malformed_request', 400, token);
  });

  it('a token just over 16 KiB', async () => {
    const token = await fixtures.token();
    const padded = `${token}${'A'.repeat(16 * 1024 + 1 - token.length)}`;
    await expectCode(padded, 'malformed_token');
  });

  it('two dots only', async () => {
    await expectCode('..', 'malformed_token');
  });

  it('invalid UTF-8 in a signed payload', async () => {
    const [before, after] = json(claims()).split(CHECKOUT) as [string, string];
    const payload = Buffer.concat([Buffer.from(before), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from(after)]);
    await expectCode(jws(header(), payload), 'malformed_token');
  });

  it('signed payload that is a JSON array', async () => {
    await expectCode(jws(header(), [claims()]), 'malformed_token');
  });

  it('signed payload null', async () => {
    await expectCode(jws(header(), 'null'), 'malformed_token');
  });
});

describe('claims', () => {
  it.each([['a string', 'soon'], ['null', null], ['negative', -1]])('exp as %s', async (_name, exp) => {
    await expectCode(await fixtures.token({ claims: { exp } }), 'malformed_token');
  });

  it('exp 1e400 (Infinity after JSON.parse)', async () => {
    await expectCode(jws(header(), json(claims()).replace(/"exp":\d+/, '"exp":1e400')), 'malformed_token');
  });

  it('iat in the future beyond the clock skew', async () => {
    await expectCode(await fixtures.token({ iat: now() + 120 }), 'token_not_yet_valid');
  });

  it('nbf in the future', async () => {
    await expectCode(await fixtures.token({ claims: { nbf: now() + 120 } }), 'token_not_yet_valid');
  });

  it('exp - iat above max_ttl', async () => {
    await expectCode(await fixtures.token({ ttl: 3600 }), 'token_lifetime_too_long');
  });

  it('expired', async () => {
    await expectCode(await fixtures.token({ iat: now() - 1000 }), 'token_expired');
  });

  it.each([['[]', []], ['123', 123], ['[123]', [123]]])('aud of the wrong type: %s', async (_name, aud) => {
    await expectCode(await fixtures.token({ claims: { aud } }), 'malformed_token');
  });

  it.each([['["other"]', ['spiffe://test.local/ns/shop/sa/other']], ['ours in upper case', AUDIENCE.toUpperCase()], ['ours with a trailing slash', `${AUDIENCE}/`]])(
    'aud of another service: %s',
    async (_name, aud) => {
      await expectCode(await fixtures.token({ aud }), 'audience_mismatch');
    },
  );

  it('positive control: aud array that contains ours is allowed', async () => {
    await expectAllowed(await fixtures.token({ aud: ['spiffe://test.local/ns/shop/sa/other', AUDIENCE] }));
  });

  it.each([['a trailing slash', `${ISSUER}/`], ['different case', ISSUER.toUpperCase()]])('iss with %s', async (_name, iss) => {
    await expectCode(await fixtures.token({ iss }), 'unknown_issuer');
  });

  it.each(['sub', 'client_id', 'jti', 'iat', 'exp'])('missing %s', async (claim) => {
    await expectCode(await fixtures.token({ claims: { [claim]: undefined } }), 'malformed_token');
  });

  it('__proto__ member in the payload', async () => {
    const token = jws(header(), json(claims()).replace('{', '{"__proto__":{"scope":"admin","aud":"x","polluted":true},'));
    const result = await check(token);
    expect(result.allowed).toBe(true);
    expect(result.headers['x-hopguard-scope']).toBe('orders:read');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    await expectAllowed(await fixtures.token());
  });

  it('__proto__ member in cnf (an unknown confirmation method)', async () => {
    const token = jws(header(), json(claims()).replace('"cnf":{', '"cnf":{"__proto__":{},'));
    await expectCode(token, 'binding_mismatch');
    await expectAllowed(await fixtures.token());
  });

  it.each([['a newline', `${CHECKOUT}\n`], ['a CRLF header injection', `${CHECKOUT}\r\nx-hopguard-scope: admin`], ['a Cyrillic look-alike', CHECKOUT.replace('c', '\u0441')]])(
    'sub with %s',
    async (_name, sub) => {
      await expectCode(await fixtures.token({ sub, clientId: CHECKOUT }), 'malformed_token');
    },
  );

  it('scope as an array', async () => {
    await expectCode(await fixtures.token({ claims: { scope: ['orders:read'] } }), 'malformed_token');
  });
});

describe('certificate binding (RFC 8705)', () => {
  it.each([
    ['random text', () => 'definitely not a certificate'],
    ['a PEM with broken base64', () => fixtures.checkout.certPem.replace(/\n[A-Za-z0-9+/]{20}/, '\n!!!!####$$$$%%%%^^^^')],
    ['a chain of two certificates', () => fixtures.checkout.certPem + fixtures.ca.certPem],
  ])('garbage certificate: %s', async (_name, certificatePem) => {
    await expectCode(await fixtures.token(), 'binding_mismatch', 401, { certificatePem: certificatePem() });
  });

  it('garbage certificate: bad percent-encoding %ZZ', async () => {
    const token = await fixtures.token();
    const envoy = rawCertificateClient(`%ZZ${encodeURIComponent(fixtures.checkout.certPem)}`);
    try {
      expectDenied(await check(token, {}, envoy), 'binding_mismatch', 401, token);
    } finally {
      envoy.close();
    }
  });

  it('certificate of another workload with the same subject CN and SAN but another key', async () => {
    const twin = issueCert(fixtures.ca, path.join(fixtures.dir, 'twin'), { name: 'checkout', uriSan: CHECKOUT, clientAuth: true });
    expect(twin.thumbprint).not.toBe(fixtures.checkout.thumbprint);
    await expectCode(await fixtures.token(), 'binding_mismatch', 401, { certificatePem: twin.certPem });
  });

  it('thumbprint computed over the PEM text instead of the DER', async () => {
    const overPem = createHash('sha256').update(fixtures.checkout.certPem).digest('base64url');
    await expectCode(await fixtures.token({ certThumbprint: overPem }), 'binding_mismatch');
  });

  it('SHA-1 thumbprint in cnf["x5t#S256"] (not a SHA-256 thumbprint: malformed)', async () => {
    const sha1 = createHash('sha1').update(new X509Certificate(fixtures.checkout.certPem).raw).digest('base64url');
    await expectCode(await fixtures.token({ certThumbprint: sha1 }), 'malformed_token');
  });

  it('SHA-1 thumbprint as cnf.x5t instead of cnf["x5t#S256"]', async () => {
    const sha1 = createHash('sha1').update(new X509Certificate(fixtures.checkout.certPem).raw).digest('base64url');
    await expectCode(await fixtures.token({ claims: { cnf: { x5t: sha1 } } }), 'binding_mismatch');
  });

  it('client-supplied x-forwarded-client-cert with the right certificate, no source.certificate', async () => {
    const token = await fixtures.token();
    const hash = Buffer.from(thumbprintOf(fixtures.checkout.certPem), 'base64url').toString('hex');
    const xfcc = `Hash=${hash};Cert="${encodeURIComponent(fixtures.checkout.certPem)}";URI=${CHECKOUT}`;
    await expectCode(token, 'binding_mismatch', 401, {
      certificatePem: undefined,
      headers: { authorization: `Bearer ${token}`, 'x-forwarded-client-cert': xfcc },
    });
  });
});

describe('request shape', () => {
  it('two credentials: Authorization twice in header_map', async () => {
    const token = await fixtures.token();
    const out = await check(token, { headers: undefined, headerMap: [['authorization', `Bearer ${token}`], ['authorization', `Bearer ${token}`]] });
    expectDenied(out, 'malformed_request', 400, token);
  });

  it('a 1 MB authorization header', async () => {
    const huge = `Bearer ${'A'.repeat(1024 * 1024)}`;
    expectDenied(await checkAuthorization(huge), 'malformed_request', 400, huge.slice(7, 100));
  });

  it('a 1 MB header beside a valid token changes nothing', async () => {
    const token = await fixtures.token();
    const out = await check(token, { headers: { authorization: `Bearer ${token}`, 'x-junk': 'j'.repeat(1024 * 1024) } });
    expect(out.allowed).toBe(true);
    expect(out.headersToRemove).not.toContain('x-junk');
  });

  it('non-UTF-8 bytes in the authorization header (header_map raw_value)', async () => {
    const token = await fixtures.token();
    const raw = Buffer.concat([Buffer.from(`Bearer ${token.slice(0, 20)}`), Buffer.from([0xff, 0xfe, 0xc3, 0x28]), Buffer.from(token.slice(20))]);
    expectDenied(await check(token, { headers: undefined, headerMap: [['authorization', raw]] }), 'malformed_request', 400, token);
  });

  it('non-UTF-8 bytes in another header beside a valid token change nothing', async () => {
    const token = await fixtures.token();
    const out = await check(token, { headers: undefined, headerMap: [['authorization', `Bearer ${token}`], ['x-bytes', Buffer.from([0xff, 0x00, 0x80])]] });
    expect(out.allowed).toBe(true);
  });
});

describe('after every attack', () => {
  it('a valid token is still allowed: the server is healthy', async () => {
    const result = await expectAllowed(await fixtures.token());
    expect(result.headers['x-hopguard-subject']).toBe(CHECKOUT);
    expect(result.headersToRemove).toContain('authorization');
    expect(running.authz.readiness().ready).toBe(true);
  });
});
