import type { VerifiedToken } from '../vocabulary/verified-token.js';
import type { HandleSealer } from './handle.js';

/**
 * The handle of each verified token, sealed once: kept beside the verification cache's entry
 * (a VerifiedToken the cache holds is the same object on every hit), so a cache hit seals
 * nothing, and the handle goes when the entry does.
 */
export class InboundHandles {
  private readonly handles = new WeakMap<VerifiedToken, string>();

  constructor(private readonly sealer: HandleSealer) {}

  /** `raw`: the token `verified` was verified from. */
  handleFor(verified: VerifiedToken, raw: string): string {
    let handle = this.handles.get(verified);
    if (handle === undefined) {
      handle = this.sealer.seal(raw, verified.exp);
      this.handles.set(verified, handle);
    }
    return handle;
  }
}
