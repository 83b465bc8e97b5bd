/**
 * The handle in W3C Baggage (`egress.handle_baggage`): OpenTelemetry-instrumented applications
 * forward the `baggage` header on every outbound call without code changes, so the handle can
 * ride in it as the member `hopguard-handle`. Only that member is read or touched; every other
 * member goes on as the application sent it. Baggage has no quoting, so members split on ",";
 * a member's key is what stands before its "=", white space trimmed (W3C Baggage §3.2).
 */
export const BAGGAGE_HEADER = 'baggage';
export const HANDLE_MEMBER = 'hopguard-handle';

export interface BaggageHandles {
  /** The values of every `hopguard-handle` member, properties dropped. */
  handles: string[];
  /** The header's other members, in order; '' when none is left. */
  rest: string;
}

export function readBaggageHandles(baggage: string): BaggageHandles {
  const handles: string[] = [];
  const kept: string[] = [];
  for (const raw of baggage.split(',')) {
    const member = raw.trim();
    if (member === '') continue;
    const eq = member.indexOf('=');
    if (eq >= 0 && member.slice(0, eq).trim() === HANDLE_MEMBER) handles.push(member.slice(eq + 1).split(';')[0]!.trim());
    else kept.push(member);
  }
  return { handles, rest: kept.join(',') };
}

/** The application's baggage with our handle as its one `hopguard-handle` member. */
export function baggageWithHandle(rest: string, handle: string): string {
  return rest === '' ? `${HANDLE_MEMBER}=${handle}` : `${rest},${HANDLE_MEMBER}=${handle}`;
}

/**
 * What to do to `baggage` so no handle member goes on: nothing, set it to the other members,
 * or remove it when none is left.
 */
export function baggageWithoutHandle(baggage: string | undefined): { set: string } | { remove: true } | undefined {
  if (baggage === undefined) return undefined;
  const { handles, rest } = readBaggageHandles(baggage);
  if (handles.length === 0) return undefined;
  return rest === '' ? { remove: true } : { set: rest };
}
