/**
 * Envoy's `request.http.path` is the raw request target. Routes are matched on a
 * normalized path, and anything that two parsers could read as two different paths is
 * refused rather than guessed at, so `/orders/../payments` cannot dodge a route rule:
 *
 * - query and fragment are dropped;
 * - percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2), other escapes
 *   keep their bytes with upper-case hex (§6.2.2.1);
 * - refused: `.` or `..` segments (raw or encoded), empty segments (`//`), encoded `/`
 *   or `\`, a raw `\`, bytes outside visible ASCII, broken escapes, a target not
 *   starting with `/`;
 * - a segment is also judged by its name, the part before its `;` parameters (RFC 3986 §3.3):
 *   Tomcat, Jetty and Spring strip `;params` before resolving dot segments, so `..;x` is `..`
 *   to them. `%3B` counts as `;` here, since a decoding proxy on the way turns it into one.
 */

export class RequestPathError extends Error {
  readonly code = 'malformed_request';
}

const HEX = /^[0-9A-Fa-f]{2}$/;
const PLAIN = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

export function normalizeRequestPath(target: string): string {
  const end = target.search(/[?#]/);
  const raw = end === -1 ? target : target.slice(0, end);
  if (!raw.startsWith('/')) throw new RequestPathError('request path does not start with "/"');
  // Fast path: most paths have no escapes, so only the segment rules apply.
  if (PLAIN.test(raw)) return checkSegments(raw);
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    const code = c.charCodeAt(0);
    if (code <= 0x20 || code >= 0x7f || c === '\\') throw new RequestPathError('request path has characters that are not allowed');
    if (c !== '%') {
      out += c;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!HEX.test(hex)) throw new RequestPathError('request path has a broken percent-escape');
    const decoded = String.fromCharCode(parseInt(hex, 16));
    if (decoded === '/' || decoded === '\\') throw new RequestPathError('request path has an encoded slash');
    out += UNRESERVED.test(decoded) ? decoded : `%${hex.toUpperCase()}`;
    i += 2;
  }
  return checkSegments(out);
}

/** `;` or its escape (upper-case hex once normalized), and the rest of the segment after it. */
const PATH_PARAMETERS = /(?:;|%3B)[^/]*/g;

/** The path as a server that strips `;params` reads it: `/orders/1;v=2` is `/orders/1`. */
export function withoutPathParameters(path: string): string {
  return path.includes(';') || path.includes('%3B') ? path.replace(PATH_PARAMETERS, '') : path;
}

/** The first `.` or `..` segment, or empty segment before the last (`//`); a trailing "/" is allowed. */
const BAD_SEGMENT = /\/\.{1,2}(?=\/|$)|\/\//;

function checkSegments(path: string): string {
  // One scan, left to right, so the first bad segment names the error (no array of segments).
  const bad = BAD_SEGMENT.exec(withoutPathParameters(path));
  if (bad?.[0] === '//') throw new RequestPathError('request path has an empty segment');
  if (bad) throw new RequestPathError('request path has a dot segment');
  return path;
}
