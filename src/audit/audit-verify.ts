import { createReadStream } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { GENESIS, checkpointSignatureValid, keyId, lineHash } from './audit-chain.js';
import { describeRun, quoted, runIdentity, sameRun, type RunIdentity } from './audit-run.js';

export type FindingKind =
  | 'malformed' | 'edited' | 'inserted' | 'deleted' | 'reordered' | 'signature' | 'truncated'
  | 'spliced' | 'writer' | 'anchor' | 'legacy';

export interface AuditVerifyOptions {
  /** The writer is still running: an unsigned tail is a note. */
  live?: boolean;
  /** A head recorded elsewhere earlier (anchored): the log must contain it. */
  head?: string;
  /** Every run must name this writer. */
  writer?: string;
  /** Accept lines written before runs had an identity, with a note. */
  allowLegacy?: boolean;
}

export interface AuditFinding {
  /** 1-based line number the finding is about. */
  line: number;
  kind: FindingKind;
  message: string;
}

export interface AuditVerifyReport {
  lines: number;
  records: number;
  checkpoints: number;
  /** The last line covered by a valid signature, 0 if none. */
  signedThrough: number;
  /** The log ends with a valid closing checkpoint. */
  closed: boolean;
  /** The hash of the last record (GENESIS for none): what to anchor elsewhere and give back as `--head`. */
  head: string;
  headLine: number;
  /** The last run's identity; undefined when no run has one. */
  lastRun?: RunIdentity;
  findings: AuditFinding[];
  /** Facts that are not tampering (a restart after a crash, records dropped under load, an unsigned live tail). */
  notes: string[];
}

interface Line {
  number: number;
  bytes: Buffer;
  /** False for a last line without its newline. */
  complete: boolean;
}

interface ChainRecord {
  seq: number;
  prev: string;
  event: string;
  key?: unknown;
  closing?: unknown;
  previous_closed?: unknown;
  count?: unknown;
  reason?: unknown;
  error?: unknown;
  since?: unknown;
  lost_seqs?: unknown;
  follows_torn_line?: unknown;
  log?: unknown;
  writer?: unknown;
  run?: unknown;
}

/** How far back a moved record's `prev` is looked up, to tell a move from an edit. */
const RECENT_LINES = 4096;

/**
 * Checks a log written by AuditRecorder with public keys only: the chain (`seq` and `prev`)
 * finds edited, deleted, inserted and reordered lines, the checkpoint signatures find a
 * rewritten chain, and a log that does not end with a closing checkpoint has lost its tail
 * (or its writer is still running: `live` then reports the unsigned tail as a note). Runs
 * (audit-run.ts) must follow each other in one log; a log cut back to the end of an earlier
 * run shows only against a head anchored elsewhere (`head`).
 *
 * What the writer itself recorded is a note, not tampering: a gap of seqs its write could
 * not put on disk, when the next line is a `records_dropped` marker naming exactly those seqs
 * and chained to the line before the gap; and a line torn by a crash or a full disk, when
 * the next line says it follows a torn line and goes on from the line before it.
 */
export async function verifyAuditLog(path: string, publicKeys: KeyObject[], options: AuditVerifyOptions = {}): Promise<AuditVerifyReport> {
  const keys = new Map(publicKeys.map((key) => [keyId(key), key]));
  const report: AuditVerifyReport = {
    lines: 0, records: 0, checkpoints: 0, signedThrough: 0, closed: false, head: GENESIS, headLine: 0, findings: [], notes: [],
  };
  const find = (line: number, kind: FindingKind, message: string) => report.findings.push({ line, kind, message });

  let head = GENESIS;
  let headLine = 0;
  let expectSeq = 1;
  const seenSeq = new Map<number, number>();
  /** Missing seq → the line where the gap showed. */
  const missing = new Map<number, number>();
  const recent = new Map<string, number>();
  let lastSeqAnomaly = 0;
  /** A malformed line just before: a mismatch after it is already reported. */
  let afterMalformed = false;
  /** That line, until the next shows whether the writer said it was torn. */
  let malformed: number | undefined;
  const reportMalformed = (at: number) =>
    find(at, 'malformed', `line ${at} is not an audit record (damaged, or cut short by a crash and continued)`);
  let cutShort: number | undefined;
  /** The run the lines belong to. */
  let run: RunIdentity | undefined;
  /** The last line before the first run with an identity. */
  let legacyThrough: number | undefined;
  let anchorLine: number | undefined;

  for await (const line of readLines(path)) {
    report.lines = line.number;
    if (!line.complete) {
      cutShort = line.number;
      break;
    }
    const text = line.bytes.toString('utf8');
    const record = parseRecord(text);
    if (!record) {
      if (malformed !== undefined) reportMalformed(malformed);
      malformed = line.number;
      // The chain goes on from the last good line, as the writer does after a crash.
      afterMalformed = true;
      continue;
    }
    if (record.follows_torn_line === true) {
      if (malformed === line.number - 1 && record.prev === head) {
        report.notes.push(`line ${malformed} is a line torn by a crash or a full disk; line ${line.number} goes on from line ${headLine} and says so`);
      } else {
        if (malformed !== undefined) reportMalformed(malformed);
        find(line.number, 'deleted', `line ${line.number} says it follows a torn line, but does not follow one that comes after line ${headLine}: lines were removed or moved`);
      }
    } else if (malformed !== undefined) {
      reportMalformed(malformed);
    }
    malformed = undefined;

    // Sequence: a gap is a deletion unless a later line fills it (then that line was moved).
    let seqAnomaly = true;
    const lost = lostSeqs(record);
    if (record.seq === expectSeq) {
      seqAnomaly = false;
    } else if (lost && lost[0] === expectSeq && lost[1] === record.seq - 1) {
      seqAnomaly = false;
      const seqs = lost[0] === lost[1] ? `${lost[0]}` : `${lost[0]}–${lost[1]}`;
      const count = Number(record.count);
      report.notes.push(`line ${line.number}: seq ${seqs} lost: not written (${String(record.error).slice(0, 24)} since ${String(record.since).slice(0, 32)}): ` +
        `${count} audit record${count === 1 ? '' : 's'}, as the writer recorded`);
    } else if (record.seq > expectSeq) {
      for (let s = expectSeq; s < record.seq; s++) missing.set(s, line.number);
    } else if (missing.has(record.seq)) {
      find(line.number, 'reordered', `line ${line.number} (seq ${record.seq}) is out of order: it belongs before line ${missing.get(record.seq)}`);
      missing.delete(record.seq);
    } else {
      const first = seenSeq.get(record.seq);
      find(line.number, 'inserted', `line ${line.number} repeats seq ${record.seq}${first ? ` of line ${first}` : ''}: a record was inserted or copied`);
    }
    if (seqAnomaly) lastSeqAnomaly = line.number;
    expectSeq = Math.max(expectSeq, record.seq + 1);
    if (!seenSeq.has(record.seq)) seenSeq.set(record.seq, line.number);

    // Runs: each follows the one before, in the same log (checked across any damage before it).
    const runStart = record.event === 'log_opened' && headLine > 0;
    if (record.event === 'log_opened') {
      const opened = runIdentity(record);
      if (opened && !run) legacyThrough = headLine;
      for (const message of runStartProblems(line.number, opened, run, record.prev === head ? undefined : headLine)) find(line.number, 'spliced', message);
      if (opened && options.writer !== undefined && opened.writer !== options.writer) {
        find(line.number, 'writer', `line ${line.number} opens ${describeRun(opened)}, not written by ${quoted(options.writer)}`);
      }
      run = opened;
    }

    // Chain: `prev` must be the hash of the line before.
    if (record.prev !== head && !seqAnomaly && !afterMalformed && !runStart) {
      const follows = recent.get(record.prev);
      if (follows === undefined) {
        const what = headLine === 0 ? 'the log\'s start was replaced' : `line ${headLine} was altered after it was written`;
        find(headLine || line.number, 'edited', `${what}: its hash is not the "prev" of line ${line.number}`);
      } else if (follows >= lastSeqAnomaly) {
        find(line.number, 'reordered', `line ${line.number} follows line ${follows} in the chain, not line ${headLine}: records were moved`);
      }
    }
    const hash = lineHash(line.bytes);
    if (hash === options.head) anchorLine = line.number;
    recent.set(hash, line.number);
    if (recent.size > RECENT_LINES) recent.delete(recent.keys().next().value!);
    head = hash;
    headLine = line.number;
    afterMalformed = false;

    report.closed = false;
    if (record.event === 'checkpoint') {
      report.checkpoints++;
      const signer = runIdentity(record);
      if (run ? !signer || !sameRun(signer, run) : signer !== undefined) {
        find(line.number, 'spliced', `line ${line.number}: a checkpoint of ${signer ? describeRun(signer) : 'no run'} inside ${run ? describeRun(run) : 'lines of no run'}: lines of another log were spliced in`);
      }
      const key = typeof record.key === 'string' ? keys.get(record.key) : undefined;
      if (!key) {
        find(line.number, 'signature', `line ${line.number}: checkpoint signed by key ${JSON.stringify(String(record.key)).slice(0, 24)}, which is not among the given keys`);
      } else if (!checkpointSignatureValid(text, key)) {
        find(line.number, 'signature', `line ${line.number}: checkpoint signature does not verify: it, or the chain before it, was altered`);
      } else {
        report.signedThrough = line.number;
        report.closed = record.closing === true;
      }
    } else {
      report.records++;
      if (record.event === 'log_opened' && record.previous_closed === false) {
        report.notes.push(`line ${line.number}: the writer restarted after an unclean stop; records it still held in memory were lost`);
      }
      if (record.event === 'records_dropped' && record.reason !== 'write_failed') {
        report.notes.push(`line ${line.number}: the writer dropped ${String(record.count)} records under overload`);
      }
    }
  }

  if (malformed !== undefined) reportMalformed(malformed);
  for (const [from, to, at] of ranges(missing)) {
    find(at, 'deleted', `${from === to ? `record seq ${from} is` : `records seq ${from}–${to} are`} missing before line ${at}: deleted`);
  }
  report.head = head;
  report.headLine = headLine;
  if (run) report.lastRun = run;
  const legacyLines = legacyThrough ?? headLine;
  if (legacyLines > 0) {
    const legacy = `lines 1–${legacyLines} were written before audit logs named their log, writer and runs: there, a cut back to an earlier run or a swap for another log signed with the same key cannot be detected`;
    if (options.allowLegacy) report.notes.push(legacy);
    else find(1, 'legacy', `${legacy} (--allow-legacy accepts them)`);
    if (options.writer !== undefined) find(1, 'writer', `lines 1–${legacyLines} name no writer: they cannot be shown to be ${quoted(options.writer)}'s`);
  }
  if (options.head !== undefined) {
    if (anchorLine === undefined) {
      find(headLine, 'anchor', `the expected head ${options.head} is not in this log: it was cut back before that point, or it is another log (its head is ${head}, line ${headLine})`);
    } else if (anchorLine < headLine) {
      report.notes.push(`the expected head is line ${anchorLine}; lines ${anchorLine + 1}–${headLine} were written after it`);
    }
  }
  if (report.lines === 0) find(0, 'truncated', 'the log is empty');
  if (cutShort !== undefined) {
    find(cutShort, 'truncated', `line ${cutShort} is cut short (no end of line): the file was truncated, or its writer died mid-write`);
  }
  if (!report.closed && report.lines > 0) {
    const unsigned = `lines ${report.signedThrough + 1}–${headLine} are not covered by a signature`;
    if (options.live) report.notes.push(`${unsigned} yet (live log)`);
    else find(headLine, 'truncated', `the log does not end with a closing checkpoint: ${unsigned}; the tail was cut, or the writer crashed or is still running (--live)`);
  }
  report.findings.sort((a, b) => a.line - b.line);
  return report;
}

/**
 * What is wrong with a run opening at `line` after the run `before` (undefined: none, or one
 * without an identity). `brokenAfter`: the line whose hash the opening line's `prev` is not.
 */
function runStartProblems(line: number, opened: RunIdentity | undefined, before: RunIdentity | undefined, brokenAfter: number | undefined): string[] {
  const problems: string[] = [];
  const what = opened ? describeRun(opened) : 'a run without a log id';
  if (!opened && before) problems.push(`line ${line} opens ${what} after ${describeRun(before)}: lines of an older log were spliced in`);
  if (opened && !before && opened.run !== 1) problems.push(`line ${line} opens ${what}, but no run of that log comes before it: its earlier runs were cut`);
  if (opened && before && opened.log !== before.log) problems.push(`line ${line} opens ${what} after ${describeRun(before)}: another log's run was spliced in`);
  else if (opened && before && opened.run !== before.run + 1) problems.push(`line ${line} opens ${what} after run ${before.run}: runs were cut or spliced`);
  if (brokenAfter !== undefined && brokenAfter > 0) {
    problems.push(`line ${line} opens ${what} but does not continue line ${brokenAfter}: the end of the run before was deleted, or this run comes from another log`);
  }
  return problems;
}

function parseRecord(text: string): ChainRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Partial<ChainRecord>;
  if (!Number.isSafeInteger(record.seq) || record.seq! < 1) return undefined;
  if (typeof record.prev !== 'string' || typeof record.event !== 'string') return undefined;
  return record as ChainRecord;
}

/** The seqs a write-failure marker says were not written, [first, last]. */
function lostSeqs(record: ChainRecord): [number, number] | undefined {
  if (record.event !== 'records_dropped' || record.reason !== 'write_failed' || !Array.isArray(record.lost_seqs)) return undefined;
  const [from, to] = record.lost_seqs as unknown[];
  return Number.isSafeInteger(from) && Number.isSafeInteger(to) && (from as number) <= (to as number) ? [from as number, to as number] : undefined;
}

/** Contiguous runs of missing seqs: [first, last, line where the gap showed]. */
function ranges(missing: Map<number, number>): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (const seq of [...missing.keys()].sort((a, b) => a - b)) {
    const last = out.at(-1);
    if (last && last[1] === seq - 1 && last[2] === missing.get(seq)) last[1] = seq;
    else out.push([seq, seq, missing.get(seq)!]);
  }
  return out;
}

async function* readLines(path: string): AsyncGenerator<Line> {
  let rest: Buffer = Buffer.alloc(0);
  let number = 0;
  for await (const chunk of createReadStream(path)) {
    const data = rest.length > 0 ? Buffer.concat([rest, chunk as Buffer]) : (chunk as Buffer);
    let start = 0;
    for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a, start)) {
      yield { number: ++number, bytes: data.subarray(start, nl), complete: true };
      start = nl + 1;
    }
    rest = data.subarray(start);
  }
  if (rest.length > 0) yield { number: ++number, bytes: rest, complete: false };
}
