// How a token is tied to its holder: the configured mode, and what a request proved.

export const BINDING_MODES = ['mtls', 'dpop', 'mtls_or_dpop', 'none'] as const;

export type BindingMode = (typeof BINDING_MODES)[number];
/** How a request proved possession: its mTLS certificate, a DPoP proof, or not at all (binding: none). */
export type BindingKind = 'mtls' | 'dpop' | 'none';
