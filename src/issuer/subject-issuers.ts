import type { IssuerConfig, SubjectIssuer, SubjectTokenType } from '../config/issuer-config.js';
import type { Logger } from '../telemetry/log.js';
import { readCaFile } from '../tls/certificate-chain.js';
import type { TrustedIssuer } from '../token/access-token-verifier.js';
import { createIssuerKeys } from '../token/jwks-source.js';

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
    const ca = subject.jwksCaFile === undefined ? undefined : readCaFile(subject.jwksCaFile, `subject_issuers[${index}].jwks_ca_file`);
    const keys = createIssuerKeys({
      issuer: subject.issuer,
      ...(subject.jwksFile !== undefined && { jwksFile: subject.jwksFile }),
      ...(subject.jwksUri !== undefined && { jwksUri: subject.jwksUri }),
      ...(ca && { ca }),
      algorithms: subject.algorithms,
      refreshIntervalMs: config.jwks.refreshIntervalMs,
      refetchIntervalMs: config.jwks.refetchIntervalMs,
      fetchTimeoutMs: config.jwks.fetchTimeoutMs,
      checkWaitMs: config.jwks.checkWaitMs,
      onFetch: (outcome, detail) => {
        if (outcome === 'error') log.warn('jwks_fetch_failed', { issuer: subject.issuer, detail });
      },
    });
    return {
      trusted: { config: subject, keys, audience: subject.audience, types: new Set(subject.typ.flatMap((t) => TYP_VALUES[t])) },
      clients: subject.clients,
    };
  });
}
