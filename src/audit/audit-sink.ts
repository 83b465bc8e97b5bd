/**
 * Where audit lines go: a file, appended to, or stdout.
 *
 * A write to a file is whole or not at all: a full disk takes what fits (a short write),
 * so a write that fails part way is cut back to the file's size before it. The file then
 * always ends with a whole line, and the writer knows exactly which lines it holds. If the
 * cut fails too, the file may end in part of a line and nothing more is appended to it
 * (`torn`): the next run skips that line and says so (audit-resume.ts).
 */

import { open, type FileHandle } from 'node:fs/promises';
import type { AuditOutput } from './audit-config.js';
import { auditFileError, errorCode } from './audit-errors.js';
import { NEW_LOG, readResume, type Resume } from './audit-resume.js';

export interface Sink {
  /** What errors and log lines name: the file's path, or "stdout". */
  readonly name: string;
  /** Rejects with a SinkWriteError; nothing of `text` is then in the sink, unless `torn`. */
  write(text: string, sync: boolean): Promise<void>;
  close(): Promise<void>;
}

export class SinkWriteError extends Error {
  override readonly name = 'SinkWriteError';
  constructor(
    readonly code: string,
    /** Part of a line may be left at the end: append nothing more. */
    readonly torn: boolean,
  ) {
    super(code);
  }
}

export async function openSink(output: AuditOutput): Promise<{ sink: Sink; resume: Resume }> {
  if (output.kind === 'stdout') {
    // Each process run is a chain of its own on stdout: verify one run's lines.
    const sink: Sink = {
      name: 'stdout',
      write: (text) => new Promise((resolve, reject) => process.stdout.write(text, (err) => (err ? reject(new SinkWriteError(errorCode(err), false)) : resolve()))),
      close: async () => undefined,
    };
    return { sink, resume: NEW_LOG };
  }
  let handle: FileHandle;
  try {
    handle = await open(output.path, 'a+', 0o640);
  } catch (err) {
    throw auditFileError('audit.output', output.path, `cannot open it (${errorCode(err)})`);
  }
  try {
    const { resume, cutShort } = await readResume(handle, output.path);
    return { sink: fileSink(handle, output.path, cutShort), resume };
  } catch (err) {
    await handle.close();
    throw (err as NodeJS.ErrnoException).code ? auditFileError('audit.output', output.path, `cannot read it (${errorCode(err)})`) : err;
  }
}

/** `cutShort`: the file ends without a newline, which the first write puts first. */
function fileSink(handle: FileHandle, path: string, cutShort: boolean): Sink {
  let newline = cutShort ? '\n' : '';
  return {
    name: path,
    async write(text, sync) {
      let size: number | undefined;
      try {
        size = (await handle.stat()).size;
        // writeFile goes on after a short write, so a failure is a real one (ENOSPC, EIO).
        await handle.writeFile(newline + text);
        if (sync) await handle.datasync();
        newline = '';
      } catch (err) {
        const whole = size === undefined || await handle.truncate(size).then(() => true, () => false);
        throw new SinkWriteError(errorCode(err), !whole);
      }
    },
    close: () => handle.close(),
  };
}
