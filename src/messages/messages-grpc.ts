import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { listenFailure } from '../admin/listen-failure.js';
import { actors } from '../token/access-token-claims.js';
import { sealHandles, type Answer, type HandleSource, type MessagesApi } from './messages-api.js';

/** proto/hopguard/messages/v1/messages.proto, from src/messages or dist/messages alike. */
export const MESSAGES_PROTO = path.resolve(import.meta.dirname, '../../proto/hopguard/messages/v1/messages.proto');

/** hopguard.messages.v1.Messages: defaults on, so an absent field reads as its zero value and is refused as missing. */
export function messagesService(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync(MESSAGES_PROTO, { keepCase: true, longs: Number, enums: String, defaults: true });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    hopguard: { messages: { v1: { Messages: grpc.ServiceClientConstructor } } };
  };
  return loaded.hopguard.messages.v1.Messages.service;
}

/**
 * The messages API over gRPC on messages.grpc_listen (loopback, plaintext), answering as the
 * HTTP API does: the same body, its status as http_status, a denial as an answer, not a gRPC error.
 */
export async function startMessagesGrpc(
  api: MessagesApi,
  listen: { host: string; port: number },
  handles: HandleSource,
): Promise<{ address: string; close: () => Promise<void> }> {
  const server = new grpc.Server();
  const unary = (serve: (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>) => Promise<Answer>, shape: (answer: Answer) => unknown) =>
    (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      serve(call).then(
        (answer) => callback(null, shape(answer)),
        () => callback({ code: grpc.status.INTERNAL, details: 'hopguard could not answer' }),
      );
    };
  server.addService(messagesService(), {
    Seal: unary((call) => {
      const values = (key: string) => call.metadata.get(key).filter((value): value is string => typeof value === 'string');
      const { destination, digest } = call.request;
      return api.seal({ destination, digest }, sealHandles(handles, values(handles.header), values('baggage')), carrierOf(call.metadata));
    }, (answer) => ({ ...response(answer), decision: answer.status === 200 ? 'allow' : 'deny' })),
    Check: unary((call) => api.check({ ...call.request }, carrierOf(call.metadata)), (answer) => {
      const act = answer.body.act;
      return { ...response(answer), actors: actors(act) };
    }),
  });
  const target = `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(listenFailure('messages.grpc_listen', target, err)) : resolve(bound)));
  });
  return {
    address: target.replace(/:\d+$/, `:${port}`),
    close: () => new Promise((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 1_000);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    }),
  };
}

/** The answer's JSON body as the response message, with its HTTP status. */
function response(answer: Answer): Record<string, unknown> {
  const { act: _act, ...body } = answer.body;
  return { ...body, http_status: answer.status };
}

function carrierOf(metadata: grpc.Metadata): Record<string, string> {
  const carrier: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata.getMap())) if (typeof value === 'string') carrier[key] = value;
  return carrier;
}
