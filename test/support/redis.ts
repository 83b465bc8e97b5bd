import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Cluster, Redis } from 'ioredis';

export const SHARED_REDIS_URL = 'redis://127.0.0.1:6379';

const HOW_TO_GET_REDIS = 'install it with "apt-get install redis-server" (.ci/run does this), '
  + 'and start one with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no';

/** A key prefix no one else uses, so tests share a Redis without touching others' keys. */
export function uniquePrefix(): string {
  return `hopguard-test-${process.pid}-${randomBytes(4).toString('hex')}:`;
}

/** Fails with directions when no Redis answers on 127.0.0.1:6379; never skips. */
export async function requireSharedRedis(): Promise<void> {
  const client = new Redis(SHARED_REDIS_URL, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await client.connect();
    await client.ping();
  } catch {
    throw new Error(`no Redis answers on 127.0.0.1:6379: ${HOW_TO_GET_REDIS}`);
  } finally {
    client.disconnect();
  }
}

/** Every key under `prefix`, for inspection and cleanup (SCAN, never KEYS or FLUSH). */
export async function keysUnder(client: Redis | Cluster, prefix: string): Promise<string[]> {
  // A new Cluster client knows no nodes until it has loaded the slot map.
  if (client.status !== 'ready') await new Promise((r) => client.once('ready', r));
  const nodes = client instanceof Cluster ? client.nodes('master') : [client];
  const found: string[] = [];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      found.push(...batch);
      cursor = next;
    } while (cursor !== '0');
  }
  return found;
}

export async function deleteKeysUnder(url: string, prefix: string): Promise<void> {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    for (const key of await keysUnder(client, prefix)) await client.del(key);
  } finally {
    client.disconnect();
  }
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

function requireBinary(name: string): void {
  if (spawnSync(name, ['--version']).error) throw new Error(`${name} is not installed: ${HOW_TO_GET_REDIS}`);
}

async function waitForPing(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    // NOAUTH: a server whose default user is off (an ACL file) is up all the same.
    const reply = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'ping']).stdout?.toString().trim() ?? '';
    if (reply === 'PONG' || reply.startsWith('NOAUTH')) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server on port ${port} did not start`);
}

/** A redis-server of the test's own, so it can be killed and restarted. */
export class RedisProcess {
  private child: ChildProcess | undefined;
  constructor(readonly port: number, private readonly extraArgs: string[] = [], private readonly dir?: string) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    requireBinary('redis-server');
    this.child = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      ...(this.dir ? ['--dir', this.dir] : []), ...this.extraArgs,
    ], { stdio: 'ignore' });
    await waitForPing(this.port);
  }

  /** SIGKILL: the way a crashed or partitioned Redis looks to its clients. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}

/** A master and one Sentinel watching it (quorum 1): what a redis-sentinel:// URL points at. */
export class RedisSentinel {
  private readonly dir = mkdtempSync(path.join(tmpdir(), 'hopguard-sentinel-'));
  private master: RedisProcess | undefined;
  private sentinel: ChildProcess | undefined;
  private sentinelPort = 0;

  get url(): string {
    return `redis-sentinel://127.0.0.1:${this.sentinelPort}/hopguard-master`;
  }

  async start(): Promise<void> {
    this.master = new RedisProcess(await freePort());
    await this.master.start();
    this.sentinelPort = await freePort();
    // Sentinel rewrites its config file, so it gets one of its own.
    const conf = path.join(this.dir, 'sentinel.conf');
    writeFileSync(conf, `port ${this.sentinelPort}\nbind 127.0.0.1\ndir ${this.dir}\n`
      + `sentinel monitor hopguard-master 127.0.0.1 ${this.master.port} 1\n`);
    this.sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    await waitForPing(this.sentinelPort);
  }

  async stop(): Promise<void> {
    if (this.sentinel && this.sentinel.exitCode === null) {
      const exited = new Promise((r) => this.sentinel!.once('exit', r));
      this.sentinel.kill('SIGKILL');
      await exited;
    }
    await this.master?.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Three masters on loopback, made with `redis-cli --cluster create`. */
export class RedisCluster {
  private readonly dir = mkdtempSync(path.join(tmpdir(), 'hopguard-cluster-'));
  private nodes: RedisProcess[] = [];

  get url(): string {
    return `redis-cluster://${this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`;
  }

  client(): Cluster {
    return new Cluster(this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
  }

  async start(): Promise<void> {
    requireBinary('redis-cli');
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const nodeDir = path.join(this.dir, String(i));
      spawnSync('mkdir', ['-p', nodeDir]);
      const node = new RedisProcess(port, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'], nodeDir);
      await node.start();
      this.nodes.push(node);
    }
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...this.nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes']);
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const states = this.nodes.map((n) => spawnSync('redis-cli', ['-p', String(n.port), 'cluster', 'info']).stdout.toString());
      if (states.every((s) => s.includes('cluster_state:ok'))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the Redis cluster did not reach cluster_state:ok');
  }

  async stop(): Promise<void> {
    for (const node of this.nodes) await node.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
