/**
 * What hopguard needs from Envoy's CheckRequest, read once into plain fields.
 * Header names are lower-case; a header sent more than once is joined with "," exactly
 * as Envoy does for `headers`, so both wire shapes (`headers`, `header_map`) read alike.
 */
export interface HopRequest {
  method: string;
  /** `http` or `https`, as Envoy saw the request: with host and path, the URI a DPoP proof names. */
  scheme: string;
  /** The raw request target: path and query, not decoded. */
  path: string;
  host: string;
  headers: ReadonlyMap<string, string>;
  /** How many times each header name was sent, where the wire shape tells (`header_map`). */
  repeated: ReadonlySet<string>;
  /** The downstream peer's IP address (source.address.socket_address), '' when none. */
  sourceAddress: string;
  /** mTLS peer identity (URI SAN), '' when none. */
  principal: string;
  /** URL-encoded PEM of the peer's leaf certificate, '' when none. */
  certificate: string;
  contextExtensions: Readonly<Record<string, string>>;
}
