import type { IncomingMessage } from 'node:http';

/** Why a request was not read to its end: what the servers log instead of a bare error. */
export type AbortReason = 'timeout' | 'client_closed' | 'too_large' | 'parse_error';

/** What cuts a body short; a body node cannot parse is node's clientError, not the reader's. */
export type BodyCut = Exclude<AbortReason, 'parse_error'>;

export class RequestAborted extends Error {
  constructor(readonly reason: BodyCut) {
    super(`request aborted: ${reason}`);
    this.name = 'RequestAborted';
  }
}

/**
 * The body of `req`, at most `maxBytes` and within `deadlineMs` of starting to read it:
 * a body sent one byte a second is cut at the deadline, not when node's request timeout
 * comes round. A Content-Length above the cap is refused before a byte is read.
 */
export function readBody(req: IncomingMessage, limits: { maxBytes: number; deadlineMs: number }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (reason?: BodyCut) => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('close', onClose).off('error', onClose);
      if (reason) reject(new RequestAborted(reason));
      else resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limits.maxBytes) return settle('too_large');
      chunks.push(chunk);
    };
    const onEnd = () => settle();
    // 'close' (or an 'aborted' error) before 'end': the client went away.
    const onClose = () => settle(req.complete ? undefined : 'client_closed');
    const timer = setTimeout(() => settle('timeout'), limits.deadlineMs);
    if (Number(req.headers['content-length']) > limits.maxBytes) return settle('too_large');
    req.on('data', onData).on('end', onEnd).on('close', onClose).on('error', onClose);
  });
}
