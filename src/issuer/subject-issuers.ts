import type { JwksOptions } from '../config/authz-config.js';
import type { IssuerConfig, SubjectIssuer, SubjectTokenType } from '../config/issuer-config.js';
import type { Logger } from '../telemetry/log.js';
import { readCaFile } from '../tls/certificate-chain.js';
import type { TrustedIssuer } from '../token/access-token-verifier.js';
import type { IssuerKeys } from '../token/issuer-keys.js';
import { createIssuerKeys } from '../token/jwks-source.js';
import type { IssuerConfig as TrustedIssuerConfig } from '../vocabulary/trusted-issuer.js';

/** A subject issuer as the exchange verifies its tokens, and the clients that may exchange them. */
export interface TrustedSubjectIssuer {
  trusted: TrustedIssuer;
  clients: readonly string[];
}

/** `typ` compares case-insensitively, with or without the application/ prefix (RFC 7515 §4.1.9). */
const TYP_VALUES: Record<SubjectTokenType, string[]> = {
  'at+jwt': ['at+jwt', 'application/at+jwt'],
  JWT: ['jwt', 'application/jwt'],
};

/** Key sets made (not yet loaded) as a sidecar makes its issuers', from the issuer's `jwks:` settings. */
export function trustSubjectIssuers(config: IssuerConfig, log: Logger): TrustedSubjectIssuer[] {
  return config.subjectIssuers.map((subject: SubjectIssuer, index) => {
    const keys = issuerKeys(subject, config.jwks, `subject_issuers[${index}]`, log);
    return {
      trusted: { config: subject, keys, audience: subject.audience, types: new Set(subject.typ.flatMap((t) => TYP_VALUES[t])) },
      clients: subject.clients,
    };
  });
}

/** The key set of a party the issuer verifies (a subject issuer, a signals transmitter); `key` names it in errors. */
export function issuerKeys(party: Omit<TrustedIssuerConfig, 'maxTtlMs'>, jwks: JwksOptions, key: string, log: Logger): IssuerKeys {
  const ca = party.jwksCaFile === undefined ? undefined : readCaFile(party.jwksCaFile, `${key}.jwks_ca_file`);
  return createIssuerKeys({
    issuer: party.issuer,
    ...(party.jwksFile !== undefined && { jwksFile: party.jwksFile }),
    ...(party.jwksUri !== undefined && { jwksUri: party.jwksUri }),
    ...(ca && { ca }),
    algorithms: party.algorithms,
    refreshIntervalMs: jwks.refreshIntervalMs,
    refetchIntervalMs: jwks.refetchIntervalMs,
    fetchTimeoutMs: jwks.fetchTimeoutMs,
    checkWaitMs: jwks.checkWaitMs,
    onFetch: (outcome, detail) => {
      if (outcome === 'error') log.warn('jwks_fetch_failed', { issuer: party.issuer, detail });
    },
  });
}
