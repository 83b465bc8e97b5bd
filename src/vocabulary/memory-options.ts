// How much `store: memory` may hold.

export interface MemoryOptions {
  /** One-time marks (token ids and DPoP proofs) held at once; when full, a new one-time use is state_unavailable. */
  maxOneTimeEntries: number;
}

/** 1,000,000: 1,000 one-time checks/s of 10-minute tokens (600,000 live marks) with room to spare; 48 MB at most. */
export const DEFAULT_MAX_ONE_TIME_ENTRIES = 1_000_000;
