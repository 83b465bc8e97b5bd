import { Cluster, Redis, type RedisOptions as IoRedisOptions } from 'ioredis';
import type { Logger } from '../telemetry/log.js';
import type { RedisOptions } from '../vocabulary/redis-options.js';
import { PASSWORD_ENV, redisCredentials } from './redis-credentials.js';

export type RedisClient = Redis | Cluster;

/**
 * One client for a store URL, using ioredis' own Sentinel and Cluster support:
 *   redis://[user@]host:port[/db]        rediss:// for TLS
 *   redis-sentinel://[user@]h1:p1,h2:p2/master[/db]
 *   redis-cluster://[user@]h1:p1,h2:p2
 * The password never comes from the URL (config load refuses one there): it is read from
 * HOPGUARD_REDIS_PASSWORD, else `redis.password_file`. A server that refuses the credentials or
 * whose certificate does not verify is logged once per outage, naming the setting to check.
 */
export function createRedisClient(
  url: string, options: RedisOptions, role: 'commands' | 'subscriber', log: Logger,
): RedisClient {
  const client = connect(url, options, role);
  reportRefusals(client, role, log);
  return client;
}

function connect(url: string, options: RedisOptions, role: 'commands' | 'subscriber'): RedisClient {
  const match = /^(redis|rediss|redis-sentinel|redis-cluster):\/\/(?:([^@/]*)@)?([^/?#]+)(?:\/([^?#]*))?/i.exec(url);
  if (!match) throw new Error('store URL is not a redis URL');
  const [, scheme = '', username, hostList = '', pathPart = ''] = match;
  const hosts = hostList.split(',').map(parseHostPort);
  const { password, tls } = redisCredentials(options);
  const common: IoRedisOptions = {
    ...(username && { username: decodeURIComponent(username) }),
    ...(password !== undefined && { password }),
    ...(scheme.toLowerCase() === 'rediss' && { tls }),
    // CLIENT SETINFO on every connect: a command the Redis ACL need not grant a sidecar.
    disableClientInfo: true,
    connectTimeout: Math.max(1000, options.commandTimeoutMs),
    // A check must never wait for a reconnect: with no offline queue, a command on a
    // broken connection fails at once, and commandTimeout bounds one on a live but slow one.
    // The subscriber only ever sends SUBSCRIBE, which may wait for the connection.
    ...(role === 'commands' && { enableOfflineQueue: false, commandTimeout: options.commandTimeoutMs }),
    // One-time marks of checks decided in the same tick go out in one write, not one syscall each.
    ...(role === 'commands' && { enableAutoPipelining: true }),
    maxRetriesPerRequest: role === 'commands' ? 0 : null,
    // Keep trying to come back, at least once a second, for as long as it takes.
    retryStrategy: (times: number) => Math.min(50 * times, 1000),
  };
  const [first = { host: '127.0.0.1', port: 6379 }] = hosts;
  const [master = '', db = ''] = pathPart.split('/');
  switch (scheme.toLowerCase()) {
    case 'redis-cluster':
      return new Cluster(hosts, {
        redisOptions: common,
        enableOfflineQueue: role !== 'commands',
        enableAutoPipelining: role === 'commands',
        clusterRetryStrategy: (times: number) => Math.min(50 * times, 1000),
      });
    case 'redis-sentinel':
      if (master === '') throw new Error('a redis-sentinel URL names the master: redis-sentinel://host:port/master-name');
      return new Redis({ ...common, sentinels: hosts, name: master, ...(db !== '' && { db: Number(db) }), ...(password !== undefined && { sentinelPassword: password }) });
    default:
      return new Redis({ ...common, host: first.host, port: first.port, ...(master !== '' && { db: Number(master) }) });
  }
}

function parseHostPort(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(text);
  if (!match) throw new Error('store URL has a host that is not host:port');
  return { host: match[1] ?? match[2] ?? '', port: Number(match[3] ?? 6379) };
}

/** Redis error replies that mean "these credentials may not do this", by their first word. */
const REFUSED_CREDENTIALS = new Set(['WRONGPASS', 'NOAUTH', 'NOPERM']);

/**
 * ioredis retries for ever, and the store fails closed meanwhile; this says why, once until the
 * connection is ready again. Only the reply's code or the TLS error code is logged: the reply
 * text is the server's, and nothing here ever holds the password.
 */
function reportRefusals(client: RedisClient, role: string, log: Logger): void {
  let reported = false;
  client.on('ready', () => { reported = false; });
  client.on('error', (err: NodeJS.ErrnoException) => {
    const code = /^[A-Z]+/.exec(err.message)?.[0] ?? '';
    const refused = REFUSED_CREDENTIALS.has(code);
    const tls = typeof err.code === 'string' && /CERT|TLS|SSL|SIGNATURE|ISSUER/.test(err.code);
    if (reported || (!refused && !tls)) return;
    reported = true;
    log.error('redis_refused', refused
      ? { connection: role, reply: code, check: `the user in the store URL and redis.password_file (or ${PASSWORD_ENV})` }
      : { connection: role, tls_error: err.code, check: 'redis.tls_ca_file, tls_cert_file and tls_key_file, and the server certificate\'s names' });
  });
}

/** Waits for the first connection, but not for long: a Redis that is down at start must not hold up the process. */
export function whenReady(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(timeoutMs, 1000));
    client.once('ready', done);
  });
}
