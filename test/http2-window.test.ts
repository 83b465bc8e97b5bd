import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authzConfig, createFixtures, startServer, type Fixtures } from './support/harness.js';

/**
 * Envoy multiplexes many CheckRequests over one connection: the sidecar must grant it more than
 * HTTP/2's initial 64 KB connection window, or streams beyond ~30 in flight wait for credit.
 */
let fixtures: Fixtures;
beforeAll(async () => { fixtures = await createFixtures(); });
afterAll(() => fixtures.cleanup());

/** The connection window the server grants, as a client sees it once the server has spoken. */
async function grantedWindow(address: string): Promise<number> {
  const session = http2.connect(`http://${address}`);
  try {
    await new Promise((resolve, reject) => session.once('remoteSettings', resolve).once('error', reject));
    // The WINDOW_UPDATE follows the server's SETTINGS; give it a moment to arrive.
    for (let i = 0; i < 50 && session.state.remoteWindowSize === 65_535; i++) await new Promise((r) => setTimeout(r, 10));
    return session.state.remoteWindowSize!;
  } finally {
    session.close();
  }
}

describe('http2_connection_window', () => {
  it('is 1 MiB by default, for every connection', async () => {
    const server = await startServer(authzConfig(fixtures));
    try {
      expect(await grantedWindow(server.authz.grpcAddress)).toBe(1 << 20);
      expect(await grantedWindow(server.authz.grpcAddress)).toBe(1 << 20);
    } finally {
      await server.stop();
    }
  });

  it('follows the config, and 65535 keeps HTTP/2\'s initial window', async () => {
    for (const window of [65_535, 4 << 20]) {
      const server = await startServer(authzConfig(fixtures, { http2ConnectionWindow: window }));
      try {
        expect(await grantedWindow(server.authz.grpcAddress)).toBe(window);
      } finally {
        await server.stop();
      }
    }
  });
});
