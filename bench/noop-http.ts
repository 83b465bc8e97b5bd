/**
 * The messages bench's floor: a node HTTP/1.1 server that reads each request's body and answers
 * a fixed JSON body the size of a check's allow, doing nothing else. The gap between it and the
 * messages API is hopguard's own work (parsing, verifying, the store, telemetry).
 *
 *   node noop-http.js PORT BODY_BYTES
 *
 * Prints the bound port on stdout, then serves until SIGTERM.
 */

import http from 'node:http';
import type { AddressInfo } from 'node:net';

const [port = '0', size = '200'] = process.argv.slice(2);
const body = JSON.stringify({ decision: 'allow', pad: 'x'.repeat(Math.max(0, Number(size) - 30)) });
const server = http.createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
  req.on('data', () => undefined);
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.listen(Number(port), '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
process.once('SIGTERM', () => server.close(() => process.exit(0)));
