/**
 * The floor: an ext_authz v3 server on @grpc/grpc-js that answers every Check with OK and does
 * nothing else. It loads the same official protos the same way hopguard does, so the gap
 * between the two is hopguard's own work.
 *
 *   node noop-authz.js PORT [CONNECTION_WINDOW_BYTES]
 *
 * Prints the bound port on stdout, then serves until SIGTERM.
 */

import * as grpc from '@grpc/grpc-js';
import { authorizationService } from '../src/authz/envoy-protos.js';
import { raiseConnectionWindow } from '../src/authz/http2-window.js';

const [port = '0', window = '65535'] = process.argv.slice(2);
const server = new grpc.Server();
raiseConnectionWindow(server, Number(window));
const OK = { status: { code: 0 } };
server.addService(authorizationService().service, {
  Check: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, OK),
});
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err) throw err;
  process.stdout.write(`${bound}\n`);
});
process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
