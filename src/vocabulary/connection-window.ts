// HTTP/2 connection windows: the protocol's initial one and hopguard's default.

/** HTTP/2's initial connection window (RFC 9113 §6.9.2), which Node keeps. */
export const HTTP2_DEFAULT_WINDOW = 65_535;

/** hopguard's default: 1 MiB, as grpc-java and Envoy use; hundreds of ~2 KB checks in flight per connection. */
export const DEFAULT_CONNECTION_WINDOW = 1 << 20;
