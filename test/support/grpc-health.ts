import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

/** The gRPC health status (grpc.health.v1) of the whole server: SERVING or NOT_SERVING. */
export function grpcHealth(address: string): Promise<string> {
  const Health = grpc.makeClientConstructor(healthService, 'Health');
  const client = new Health(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
  return new Promise((resolve, reject) => client.Check({ service: '' }, (err: Error | null, res: { status: string }) => {
    client.close();
    if (err) reject(err);
    else resolve(res.status);
  }));
}
