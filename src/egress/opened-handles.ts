import { LRUCache } from 'lru-cache';
import type { HandleSealer, OpenedHandle } from './handle.js';
import { subjectToken, type SubjectToken } from './outbound-tokens.js';

/** Handles kept opened at once: one per inbound request whose application is calling out. */
const MAX_OPENED_HANDLES = 10_000;

export type OpenedSubject =
  | { ok: true; subject: SubjectToken; exp: number }
  | Extract<OpenedHandle, { ok: false }>;

/**
 * The outbound check's handle opening: an application sends the same handle on every call it
 * makes for one inbound request, so each handle is decrypted (and its token digested for the
 * token cache's key) once, then found by its exact text. Only handles that opened are kept;
 * a kept one is still refused once its token's exp has passed, as the sealer would.
 */
export class OpenedHandles {
  private readonly opened = new LRUCache<string, { subject: SubjectToken; exp: number }>({ max: MAX_OPENED_HANDLES });

  constructor(private readonly sealer: HandleSealer) {}

  open(handle: string, nowMs: number): OpenedSubject {
    const known = this.opened.get(handle);
    if (known) {
      if (known.exp * 1000 > nowMs) return { ok: true, ...known };
      this.opened.delete(handle);
      return { ok: false, reason: 'expired' };
    }
    const opened = this.sealer.open(handle, nowMs);
    if (!opened.ok) return opened;
    const entry = { subject: subjectToken(opened.token), exp: opened.exp };
    this.opened.set(handle, entry);
    return { ok: true, ...entry };
  }
}
