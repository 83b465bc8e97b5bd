/**
 * How a sidecar obtains tokens from the issuer: RFC 8693 token exchange and client credentials
 * over mTLS with this workload's certificate, so each token is bound to it (RFC 8705). One
 * keep-alive agent per certificate pair; a rotation swaps in a new agent, and the old one is
 * closed once its requests can no longer be running. With transport mesh the requests are plain
 * HTTP to the pod's own mesh proxy, which presents the same certificate (Istio's, written to
 * files by its agent): the files are still read, for the binding and to see it rotate.
 */

import https from 'node:https';
import http, { type IncomingMessage } from 'node:http';
import type { Context } from '@opentelemetry/api';
import { FILE_KINDS, readConfiguredFile } from '../schema/bounded-read.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import { outgoingTraceHeaders } from '../telemetry/tracing.js';
import { MESSAGE_TOKEN_TYPE, type MessageClaim } from '../vocabulary/message-token.js';
import { IssuedToken } from './issued-token.js';
import { exchangeRefused, issuerUnavailable, IssuerClientError } from './issuer-client-error.js';
import { parseIssuerClientOptions, type IssuerClientOptions } from './issuer-client-options.js';
import { WorkloadCertificate, type CertificateListener, type CertificatePair } from './workload-certificate.js';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

// A token response is a few KB; anything far larger is not one.
const MAX_RESPONSE_BYTES = 64 * 1024;
// RFC 6749 §5.2: `error` is printable ASCII but " and \; bounded so it cannot carry a payload.
const OAUTH_ERROR = /^[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}$/;

export interface TokenRequest {
  audience: string;
  /** Asked for; the issuer may narrow them. Empty: whatever the issuer grants by default. */
  scopes?: readonly string[];
  /** The trace the request belongs to (e.g. the egress check's span): the issuer's span and audit record join it. */
  context?: Context;
}

export interface ExchangeRequest extends TokenRequest {
  /** The inbound access token, never logged or put in an error. */
  subjectToken: string;
}

/** A token for one message (design "Messages"): for `audience`, the message's consumer. */
export interface MessageTokenRequest extends TokenRequest {
  message: MessageClaim;
  /** How long the message may wait: the token's lifetime, which the issuer may cap. */
  maxDelayMs: number;
  /** The inbound access token the message is sent on behalf of; absent: this workload's own. */
  subjectToken?: string;
}

export class IssuerClient {
  readonly options: IssuerClientOptions;
  private readonly ca: Buffer | undefined;
  private readonly certificate: WorkloadCertificate;
  private agent: http.Agent;

  /** Reads the CA and the workload pair now: a ConfigError names what is wrong. */
  constructor(options: unknown, log: Logger = silentLogger) {
    this.options = parseIssuerClientOptions(options);
    this.ca = this.options.caFile === undefined ? undefined : readConfiguredFile(this.options.caFile, 'caFile', FILE_KINDS.certificate);
    this.certificate = new WorkloadCertificate(this.options.certFile, this.options.keyFile, this.options.certPollMs, log);
    this.agent = this.agentFor(this.certificate.current);
    this.certificate.onChange((pair) => this.useCertificate(pair));
  }

  /** `x5t#S256` of the certificate tokens are requested over now. */
  get thumbprint(): string {
    return this.certificate.current.thumbprint;
  }

  /** RFC 8693: a token for `audience` on behalf of the subject token's subject, this workload as actor. */
  async exchange(request: ExchangeRequest): Promise<IssuedToken> {
    if (typeof request.subjectToken !== 'string' || request.subjectToken === '') throw new TypeError('subjectToken must be a non-empty string');
    return this.requestToken({
      grant_type: TOKEN_EXCHANGE,
      subject_token: request.subjectToken,
      subject_token_type: ACCESS_TOKEN_TYPE,
      ...tokenParameters(request),
    }, request.context);
  }

  /** This workload's own token for `audience`. */
  async clientCredentials(request: TokenRequest): Promise<IssuedToken> {
    return this.requestToken({ grant_type: 'client_credentials', ...tokenParameters(request) }, request.context);
  }

  /** A message token, exchanged from `subjectToken` (on someone's behalf) or this workload's own. */
  async messageToken(request: MessageTokenRequest): Promise<IssuedToken> {
    const { subjectToken, message, maxDelayMs } = request;
    const delegation: Record<string, string> = subjectToken === undefined
      ? { grant_type: 'client_credentials' }
      : { grant_type: TOKEN_EXCHANGE, subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE };
    return this.requestToken({
      ...delegation,
      requested_token_type: MESSAGE_TOKEN_TYPE,
      message_destination: message.destination,
      message_digest: message.digest,
      message_max_delay: String(Math.max(1, Math.floor(maxDelayMs / 1000))),
      ...tokenParameters(request),
    }, request.context, 'n_a');
  }

  /**
   * Called after each certificate rotation, once requests already use the new pair: tokens
   * bound to the old certificate no longer match what Envoy presents. Returns the unsubscribe.
   */
  onCertificateChange(listener: CertificateListener): () => void {
    return this.certificate.onChange(listener);
  }

  close(): void {
    this.certificate.close();
    this.agent.destroy();
  }

  private useCertificate(pair: CertificatePair): void {
    const old = this.agent;
    this.agent = this.agentFor(pair);
    // Every request on the old agent has settled by then: the timeout is total.
    setTimeout(() => old.destroy(), this.options.timeoutMs + 1_000).unref();
  }

  private agentFor(pair: CertificatePair): http.Agent {
    if (this.options.transport === 'mesh') return new http.Agent({ keepAlive: true });
    return new https.Agent({ keepAlive: true, ca: this.ca!, cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' });
  }

  /** `tokenType`: the token_type a 200 must carry, lower case (N_A for a message token, RFC 8693 §2.2.1). */
  private requestToken(form: Record<string, string>, context: Context | undefined, tokenType = 'bearer'): Promise<IssuedToken> {
    const body = new URLSearchParams(form).toString();
    const boundTo = this.thumbprint;
    const { timeoutMs } = this.options;
    return new Promise<IssuedToken>((resolve, reject) => {
      const req = (this.options.transport === 'mesh' ? http : https).request(this.options.tokenEndpoint, {
        method: 'POST',
        agent: this.agent,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'content-length': Buffer.byteLength(body),
          accept: 'application/json',
          ...(context && outgoingTraceHeaders(context)),
        },
      }, (res) => {
        readBody(res).then((text) => tokenFrom(res.statusCode ?? 0, text, boundTo, tokenType)).then(resolve, reject);
      });
      // Total, connect to last byte: the socket's own timeout is only for idleness.
      const timer = setTimeout(() => req.destroy(issuerUnavailable(`no answer within ${timeoutMs} ms`)), timeoutMs);
      req.on('close', () => clearTimeout(timer));
      req.on('error', (err) => reject(err instanceof IssuerClientError ? err : issuerUnavailable(networkReason(err), err)));
      req.end(body);
    });
  }
}

function tokenParameters({ audience, scopes = [] }: TokenRequest): Record<string, string> {
  if (typeof audience !== 'string' || audience === '') throw new TypeError('audience must be a non-empty string');
  if (scopes.some((scope) => typeof scope !== 'string' || !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(scope))) {
    throw new TypeError('each scope must be a non-empty scope token (RFC 6749 §3.3)');
  }
  return { audience, ...(scopes.length > 0 && { scope: scopes.join(' ') }) };
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    res.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length > MAX_RESPONSE_BYTES) {
        res.destroy(issuerUnavailable(`an answer larger than ${MAX_RESPONSE_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', (err) => reject(err instanceof IssuerClientError ? err : issuerUnavailable(networkReason(err), err)));
    // After 'end' this changes nothing: a settled promise stays settled.
    res.on('close', () => reject(issuerUnavailable('the answer was cut off')));
  });
}

/** A token, the issuer's refusal, or issuer_unavailable for anything that is neither. */
function tokenFrom(status: number, text: string, boundTo: string, tokenType: string): IssuedToken {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw issuerUnavailable(`HTTP ${status} with an answer that is not JSON`);
  }
  const fields = typeof body === 'object' && body !== null && !Array.isArray(body) ? body as Record<string, unknown> : {};
  if (status === 200) {
    const { access_token: token, token_type: type, expires_in: expiresIn, scope } = fields;
    const usable = typeof token === 'string' && token !== '' && typeof type === 'string' && type.toLowerCase() === tokenType
      && typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0;
    if (!usable) throw issuerUnavailable(`HTTP 200 without an access_token of type ${tokenType} and expires_in`);
    const lifetimeMs = expiresIn * 1000;
    return new IssuedToken(token, Date.now() + lifetimeMs, lifetimeMs, typeof scope === 'string' ? scope : undefined, boundTo);
  }
  // 429 and 5xx are the issuer's trouble, not a verdict on this request: retrying may succeed.
  const refusal = status >= 400 && status < 500 && status !== 429;
  if (refusal && typeof fields.error === 'string' && OAUTH_ERROR.test(fields.error)) throw exchangeRefused(status, fields.error);
  throw issuerUnavailable(`HTTP ${status}`);
}

/** An errno or TLS code (ECONNREFUSED, ECONNRESET, ERR_TLS_CERT_ALTNAME_INVALID...), never a message. */
function networkReason(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'connection failed';
}
