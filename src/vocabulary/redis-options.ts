// How the Redis store connects and how long it trusts what it last saw.

/** Used when `store` is a redis URL. */
export interface RedisOptions {
  /** Every key hopguard writes starts with this, so a shared Redis stays tidy. */
  keyPrefix: string;
  /** The password comes from HOPGUARD_REDIS_PASSWORD or this file, never the YAML. */
  passwordFile?: string;
  /** CA bundle for rediss:// servers with a private CA. */
  tlsCaFile?: string;
  /** A client certificate and its key, for a rediss:// server that asks for one (both or neither). */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** No check waits longer than this on Redis. */
  commandTimeoutMs: number;
  /** With the revocation feed lost, tokens are still checked against the last known state this long, then denied. */
  maxStalenessMs: number;
  /** Full resync of revocations, on top of pub/sub. */
  resyncIntervalMs: number;
}
