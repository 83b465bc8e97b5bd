// A token issuer a sidecar trusts, as its config names it.
import type { Algorithm } from './algorithms.js';

export interface IssuerConfig {
  issuer: string;
  /** Exactly one of jwksFile / jwksUri is set. */
  jwksFile?: string;
  jwksUri?: string;
  /** CA bundle for an https jwksUri served with a private (mesh) CA. */
  jwksCaFile?: string;
  algorithms: Algorithm[];
  maxTtlMs: number;
}
