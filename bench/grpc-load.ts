/**
 * A minimal gRPC client on node:http2 for load in which every request differs: h2load sends the
 * one body of `-d FILE` on every stream, so it cannot send a new token on each check. This one
 * sends pre-encoded, length-prefixed gRPC frames round-robin over a few HTTP/2 connections and
 * hands back each response message with its latency; nothing is serialized on the hot path.
 */

import http2 from 'node:http2';

export interface Answer {
  /** The response message, without the 5-byte gRPC prefix. */
  message: Buffer;
  /** From writing the request to the end of the response, µs. */
  latencyUs: number;
}

export class GrpcLoad {
  private readonly sessions: http2.ClientHttp2Session[];
  private turn = 0;

  constructor(address: string, private readonly path: string, connections: number) {
    this.sessions = Array.from({ length: connections }, () => {
      const session = http2.connect(`http://${address}`);
      // A session error fails its streams, which report it; this only keeps it from being uncaught.
      session.on('error', () => {});
      return session;
    });
  }

  /** Sends one framed request; rejects on a transport error, a non-200 or a gRPC status other than OK. */
  send(frame: Buffer): Promise<Answer> {
    const session = this.sessions[this.turn++ % this.sessions.length]!;
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': this.path, 'content-type': 'application/grpc', te: 'trailers' });
      const chunks: Buffer[] = [];
      let status: number | undefined;
      let grpcStatus: string | undefined;
      let grpcMessage: string | undefined;
      stream.on('response', (headers) => {
        status = headers[':status'];
        grpcStatus = headers['grpc-status'] as string | undefined;
      });
      stream.on('trailers', (trailers) => {
        grpcStatus = trailers['grpc-status'] as string | undefined;
        grpcMessage = trailers['grpc-message'] as string | undefined;
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', reject);
      stream.on('end', () => {
        const latencyUs = (performance.now() - started) * 1000;
        const body = Buffer.concat(chunks);
        if (status !== 200) return reject(new Error(`HTTP status ${status}`));
        if (grpcStatus !== '0') return reject(new Error(`grpc-status ${grpcStatus}${grpcMessage ? `: ${decodeURIComponent(grpcMessage)}` : ''}`));
        if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5) return reject(new Error(`a malformed gRPC response of ${body.length} bytes`));
        resolve({ message: body.subarray(5), latencyUs });
      });
      stream.end(frame);
    });
  }

  close(): void {
    for (const session of this.sessions) session.close();
  }
}
