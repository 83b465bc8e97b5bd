import { z } from 'zod';
import { ConfigError } from '../schema/config-error.js';
import { expected, nonEmptyString, onObjects, toProblems } from '../schema/config-schema.js';

/** How a workload reaches its issuer: the design's `issuer_client:` section, parsed. */
export interface IssuerClientOptions {
  /** The issuer's token endpoint: an https:// URL, or http:// with transport mesh. */
  tokenEndpoint: string;
  /** tls (default): mTLS to the issuer; mesh: plain HTTP to the pod's own mesh proxy, which does the mTLS. */
  transport: 'tls' | 'mesh';
  /** CA of the issuer's server certificate; absent with transport mesh. */
  caFile?: string;
  /** This workload's certificate and key, the ones Envoy presents: issued tokens are bound to them. */
  certFile: string;
  keyFile: string;
  /** Total time for one request, connect to last byte. */
  timeoutMs: number;
  /** How often the certificate files are checked for a rotation. */
  certPollMs: number;
}

export const DEFAULT_ISSUER_TIMEOUT_MS = 2_000;
const DEFAULT_CERT_POLL_MS = 1_000;

const endpoint = z.string(expected('an https:// URL')).refine((text) => {
  if (!URL.canParse(text)) return false;
  const url = new URL(text);
  return (url.protocol === 'https:' || url.protocol === 'http:') && url.username === '' && url.password === '' && url.hash === '';
}, 'expected an https:// URL without credentials or fragment');

const milliseconds = (max: number) =>
  z.number(expected('a number of milliseconds')).int('must be whole milliseconds').positive('must be greater than 0').max(max, `must be at most ${max}`);

const schema = z.strictObject({
  tokenEndpoint: endpoint,
  transport: z.enum(['tls', 'mesh'], expected('tls or mesh')).default('tls'),
  caFile: nonEmptyString.optional(),
  certFile: nonEmptyString,
  keyFile: nonEmptyString,
  timeoutMs: milliseconds(60_000).default(DEFAULT_ISSUER_TIMEOUT_MS),
  certPollMs: milliseconds(60_000).default(DEFAULT_CERT_POLL_MS),
}).superRefine((options, ctx) => {
  // http only to the pod's own mesh proxy, never by accident; a CA only where hopguard does the TLS.
  // Also run beside other problems (onObjects), so every one is named at once.
  if (typeof options.tokenEndpoint !== 'string') return;
  const http = options.tokenEndpoint.startsWith('http:');
  if (http !== (options.transport === 'mesh')) {
    ctx.addIssue({ code: 'custom', path: ['tokenEndpoint'], message: options.transport === 'mesh' ? 'expected an http:// URL with transport mesh' : 'expected an https:// URL without credentials or fragment' });
  }
  if (options.caFile !== '' && (options.caFile === undefined) !== (options.transport === 'mesh')) {
    ctx.addIssue({ code: 'custom', path: ['caFile'], message: options.transport === 'mesh' ? 'is not used with transport mesh' : 'is required' });
  }
}, onObjects);

/** Every problem at once, as a ConfigError naming its key; unknown keys are refused. */
export function parseIssuerClientOptions(input: unknown): IssuerClientOptions {
  const result = schema.safeParse(input);
  if (!result.success) throw new ConfigError(result.error.issues.flatMap(toProblems));
  return result.data;
}
