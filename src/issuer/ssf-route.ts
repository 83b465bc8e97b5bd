import type { IncomingMessage, ServerResponse } from 'node:http';
import { MAX_SET_BYTES } from '../signals/security-event-token.js';
import type { SsfReceiver } from '../signals/ssf-receiver.js';
import { throttledLog } from '../telemetry/log-throttle.js';
import type { Logger } from '../telemetry/log.js';
import type { AbortPhase } from '../tls/server-bounds.js';
import { readBody, RequestAborted, type AbortReason } from '../tls/request-body.js';

/**
 * POST /ssf/events (RFC 8935): one SET as `application/secevent+jwt`, 202 when accepted, 400
 * with `{"err", "description"}` when not. No client certificate: the SET's signature
 * authenticates its transmitter. The body is cut at 64 KiB and at the body deadline.
 */
export function ssfRoute(receiver: SsfReceiver, log: Logger, bodyMs: number, aborted: (reason: AbortReason, during: AbortPhase) => void) {
  // A refused SET is the sender's doing: logged at most once a second per error code.
  const refused = throttledLog(log, 'warn');
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/secevent+jwt') {
      return answer(res, 400, { err: 'invalid_request', description: 'the body must be application/secevent+jwt' }, !req.complete);
    }
    let body: Buffer;
    try {
      body = await readBody(req, { maxBytes: MAX_SET_BYTES, deadlineMs: bodyMs });
    } catch (err) {
      if (!(err instanceof RequestAborted)) throw err;
      aborted(err.reason, 'body');
      if (err.reason === 'client_closed') return void res.destroy();
      return err.reason === 'too_large'
        ? answer(res, 400, { err: 'invalid_request', description: `the SET is larger than ${MAX_SET_BYTES} bytes` }, true)
        : answer(res, 408, { err: 'invalid_request', description: 'the request body took too long' }, true);
    }
    const result = await receiver.receive(body.toString('utf8'));
    if (result.status === 202) return void res.writeHead(202, { 'cache-control': 'no-store' }).end();
    if (result.status === 400) refused('ssf_set_refused', { err: result.err });
    else log.error('ssf_set_unprocessed', { err: result.err });
    answer(res, result.status, { err: result.err, description: result.description }, false,
      result.status === 503 ? { 'retry-after': '1' } : {});
  };
}

function answer(res: ServerResponse, status: number, body: { err: string; description: string }, close: boolean, headers: Record<string, string> = {}) {
  res.writeHead(status, {
    'content-type': 'application/json', 'cache-control': 'no-store', ...headers, ...(close && { connection: 'close' }),
  }).end(JSON.stringify(body));
}
