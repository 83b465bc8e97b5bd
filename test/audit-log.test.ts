import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS, keyId, lineHash, readEd25519Key, signCheckpoint } from '../src/audit/audit-chain.js';
import { AUDIT_DEFAULTS, type AuditConfig } from '../src/audit/audit-config.js';
import type { AuditEvent } from '../src/audit/audit-event.js';
import { openAuditLog } from '../src/audit/audit-log.js';
import { verifyAuditLog, type AuditVerifyReport, type FindingKind } from '../src/audit/audit-verify.js';
import { createLogger, silentLogger } from '../src/telemetry/log.js';
import { writeAuditKeyPair } from './support/audit-keys.js';
import { runCli, spawnCli } from './support/process.js';

let dir: string;
let privatePath: string;
let publicPath: string;
let otherPublicPath: string;
let clean: string;

const config = (path: string, overrides: Partial<AuditConfig> = {}): AuditConfig => ({
  ...AUDIT_DEFAULTS,
  output: { kind: 'file', path },
  signingKeyFile: privatePath,
  checkpointRecords: 4,
  flushIntervalMs: 5,
  ...overrides,
});

const event = (i: number): AuditEvent => (i % 3 === 0
  ? { event: 'issuance', decision: 'allow', issuer: 'https://sts', audience: 'spiffe://a', subject: `s${i}`, client: 'c', tokenFingerprint: `fp${i}`, scope: 'x:y' }
  : { event: 'validation', decision: i % 2 ? 'deny' : 'allow', code: i % 2 ? 'token_expired' : undefined, route: 'r', traceId: `${i}`.padStart(32, '0') });

/** A log of `count` records, closed cleanly. */
async function writeLog(path: string, count: number, overrides: Partial<AuditConfig> = {}): Promise<string> {
  const audit = await openAuditLog(config(path, overrides), { log: silentLogger });
  for (let i = 1; i <= count; i++) audit.record(event(i));
  await audit.close();
  return readFileSync(path, 'utf8');
}

const verify = async (path: string, options: { live?: boolean } = {}, key = publicPath) =>
  verifyAuditLog(path, [readEd25519Key(key, 'public')], options);

/** A copy of the clean log with `change` applied to its lines (1-based indexes in the findings). */
async function tampered(name: string, change: (lines: string[]) => string[] | string): Promise<AuditVerifyReport> {
  const lines = clean.trimEnd().split('\n');
  const changed = change(lines);
  const path = join(dir, `${name}.jsonl`);
  writeFileSync(path, typeof changed === 'string' ? changed : `${changed.join('\n')}\n`);
  return verify(path);
}

const kinds = (report: AuditVerifyReport) => report.findings.map((f) => [f.kind, f.line] as [FindingKind, number]);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hopguard-audit-'));
  ({ privatePath, publicPath } = writeAuditKeyPair(dir));
  otherPublicPath = writeAuditKeyPair(dir, 'other').publicPath;
  clean = await writeLog(join(dir, 'clean.jsonl'), 10);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the audit log format', () => {
  it('chains every line to the one before and signs checkpoints every N records and on close', () => {
    const lines = clean.trimEnd().split('\n');
    const records = lines.map((l) => JSON.parse(l));
    expect(records.map((r) => r.seq)).toEqual(lines.map((_, i) => i + 1));
    expect(records[0]).toMatchObject({ event: 'log_opened', prev: GENESIS });
    for (let i = 1; i < lines.length; i++) expect(records[i].prev).toBe(lineHash(lines[i - 1]!));
    // log_opened + 10 records, a checkpoint after every 4 lines, and a closing one.
    expect(records.filter((r) => r.event === 'checkpoint').map((r) => [r.seq, r.closing ?? false]))
      .toEqual([[5, false], [10, false], [14, true]]);
    expect(Object.keys(records[1])).toEqual(['seq', 'time', 'event', 'decision', 'code', 'route', 'trace_id', 'prev']);
    expect(records[3]).toMatchObject({
      event: 'issuance', issuer: 'https://sts', audience: 'spiffe://a', subject: 's3', client: 'c', scope: 'x:y', token_fingerprint: 'fp3',
    });
  });

  it('writes a checkpoint after checkpoint_interval even below N records', async () => {
    const path = join(dir, 'timed.jsonl');
    const audit = await openAuditLog(config(path, { checkpointRecords: 1000, checkpointIntervalMs: 30 }), { log: silentLogger });
    audit.record(event(1));
    const events = () => readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).event);
    await expect.poll(events, { timeout: 3000 }).toEqual(['log_opened', 'validation', 'checkpoint']);
    await audit.close();
  });
});

describe('verify', () => {
  it('accepts the clean log with the public key alone', async () => {
    const report = await verify(join(dir, 'clean.jsonl'));
    expect(report).toMatchObject({ lines: 14, records: 11, checkpoints: 3, signedThrough: 14, closed: true, findings: [] });
  });

  it('finds an edited record, and names its line', async () => {
    const report = await tampered('edited', (lines) => lines.map((l, i) => (i === 6 ? l.replace('"deny"', '"allow"') : l)));
    expect(kinds(report)).toEqual([['edited', 7]]);
    expect(report.findings[0]!.message).toContain('line 7 was altered');
  });

  it('finds a deleted record', async () => {
    const report = await tampered('deleted', (lines) => lines.filter((_, i) => i !== 6));
    expect(kinds(report)).toEqual([['deleted', 7]]);
    expect(report.findings[0]!.message).toContain('record seq 7 is missing before line 7');
  });

  it('finds an inserted record, copied or made up', async () => {
    const copied = await tampered('copied', (lines) => [...lines.slice(0, 8), lines[2]!, ...lines.slice(8)]);
    expect(kinds(copied)).toEqual([['inserted', 9]]);
    const madeUp = await tampered('made-up', (lines) => {
      const fake = JSON.stringify({ seq: 9, time: new Date().toISOString(), event: 'validation', decision: 'allow', prev: lineHash(lines[7]!) });
      return [...lines.slice(0, 8), fake, ...lines.slice(8)];
    });
    expect(kinds(madeUp)).toEqual([['inserted', 10]]);
  });

  it('finds reordered records', async () => {
    const report = await tampered('reordered', (lines) => [...lines.slice(0, 6), lines[7]!, lines[6]!, ...lines.slice(8)]);
    expect(kinds(report)).toEqual([['reordered', 8]]);
    expect(report.findings[0]!.message).toContain('belongs before line 7');
  });

  it('finds a tail cut at a line end, and one cut mid-line', async () => {
    const cut = await tampered('cut', (lines) => lines.slice(0, 12));
    expect(kinds(cut)).toEqual([['truncated', 12]]);
    expect(cut.findings[0]!.message).toContain('lines 11–12 are not covered by a signature');
    const midLine = await tampered('mid-line', (lines) => `${lines.join('\n')}\n`.slice(0, -40));
    expect(kinds(midLine)).toEqual([['truncated', 13], ['truncated', 14]]);
    expect(midLine.findings[1]!.message).toContain('line 14 is cut short');
  });

  it('finds a chain rewritten from an edit onwards: only the signatures catch it', async () => {
    const report = await tampered('rewritten', (lines) => {
      const out = [...lines];
      out[6] = out[6]!.replace('"deny"', '"allow"');
      for (let i = 7; i < out.length; i++) {
        const record = JSON.parse(out[i]!);
        const rechained = JSON.stringify({ ...record, prev: lineHash(out[i - 1]!) });
        out[i] = rechained;
      }
      return out;
    });
    expect(report.findings.map((f) => f.kind)).toEqual(['signature', 'signature', 'truncated']);
    expect(report.findings[0]).toMatchObject({ line: 10 });
    expect(report.signedThrough).toBe(5);
  });

  it('refuses checkpoints signed by a key it was not given', async () => {
    const report = await verify(join(dir, 'clean.jsonl'), {}, otherPublicPath);
    expect(report.findings.map((f) => f.kind)).toEqual(['signature', 'signature', 'signature', 'truncated']);
    expect(report.signedThrough).toBe(0);
  });

  it('reports an unsigned tail of a live log as a note, not a failure', async () => {
    const path = join(dir, 'live.jsonl');
    writeFileSync(path, `${clean.trimEnd().split('\n').slice(0, 12).join('\n')}\n`);
    const report = await verify(path, { live: true });
    expect(report.findings).toEqual([]);
    expect(report.notes).toEqual(['lines 11–12 are not covered by a signature yet (live log)']);
  });
});

describe('the writer across restarts and overload', () => {
  it('continues the chain of an existing file after a clean close', async () => {
    const path = join(dir, 'resumed.jsonl');
    await writeLog(path, 3);
    const text = await writeLog(path, 3);
    const opened = text.trimEnd().split('\n').map((l) => JSON.parse(l)).filter((r) => r.event === 'log_opened');
    expect(opened.map((r) => r.previous_closed)).toEqual([undefined, true]);
    expect((await verify(path)).findings).toEqual([]);
  });

  it('after a crash mid-write, goes on from the last whole line in a run that says it follows the torn line: verify notes it, not as tampering', async () => {
    const path = join(dir, 'crashed.jsonl');
    // The writer died after line 12, while writing line 13.
    writeFileSync(path, `${clean.trimEnd().split('\n').slice(0, 12).join('\n')}\n`);
    appendFileSync(path, '{"seq":13,"time":"2026-01-01T00:00:00.000Z","event":"valid');
    const lines = (await writeLog(path, 2)).trimEnd().split('\n');
    expect(JSON.parse(lines[13]!)).toMatchObject({ seq: 13, event: 'log_opened', follows_torn_line: true, prev: lineHash(lines[11]!) });
    const report = await verify(path);
    expect(kinds(report)).toEqual([]);
    expect(report.notes).toEqual([
      'line 13 is a line torn by a crash or a full disk; line 14 goes on from line 12 and says so',
      'line 14: the writer restarted after an unclean stop; records it still held in memory were lost',
    ]);
    expect(report.closed).toBe(true);

    // The claim covers one torn line, right before it: a record removed there is still found.
    const removed = join(dir, 'crashed-then-cut.jsonl');
    writeFileSync(removed, `${[...lines.slice(0, 11), ...lines.slice(12)].join('\n')}\n`);
    expect(kinds(await verify(removed))).toEqual([['malformed', 12], ['deleted', 13], ['spliced', 13], ['deleted', 13]]);
  });

  it('after a crash that left a whole last record without its newline, goes on from that record', async () => {
    const path = join(dir, 'unterminated.jsonl');
    writeFileSync(path, clean.trimEnd().split('\n').slice(0, 12).join('\n'));
    const lines = (await writeLog(path, 1)).trimEnd().split('\n');
    expect(JSON.parse(lines[12]!)).toMatchObject({ seq: 13, event: 'log_opened', previous_closed: false, prev: lineHash(lines[11]!) });
    expect(JSON.parse(lines[12]!).follows_torn_line).toBeUndefined();
    expect(kinds(await verify(path))).toEqual([]);
  });

  it('takes a records_dropped marker as the account of exactly the gap before it, and no other', async () => {
    // A log whose write of seqs 7–9 failed: the marker names them and chains to line 6.
    const lines = clean.trimEnd().split('\n').slice(0, 6);
    const marker = JSON.stringify({
      seq: 10, time: '2026-01-01T00:00:00.000Z', event: 'records_dropped', reason: 'write_failed', error: 'ENOSPC',
      since: '2026-01-01T00:00:00.000Z', count: 2, lost_seqs: [7, 9], prev: lineHash(lines[5]!),
    });
    const after = JSON.stringify({ seq: 11, time: '2026-01-01T00:00:01.000Z', event: 'validation', decision: 'deny', prev: lineHash(marker) });
    const report = await tampered('recorded-loss', () => [...lines, marker, after]);
    expect(report.notes).toEqual(['line 7: seq 7–9 lost: not written (ENOSPC since 2026-01-01T00:00:00.000Z): 2 audit records, as the writer recorded']);
    expect(kinds(report)).toEqual([['truncated', 8]]);
    // Delete a line before the marker: the gap is no longer the one it names.
    const cut = await tampered('recorded-loss-and-deletion', () => [...lines.slice(0, 5), marker, after]);
    expect(kinds(cut)).toEqual([['deleted', 6], ['truncated', 7]]);
  });

  it('refuses to append to a file that is not an audit log', async () => {
    const path = join(dir, 'not-a-log.txt');
    writeFileSync(path, 'hello\n');
    await expect(openAuditLog(config(path), { log: silentLogger })).rejects.toThrow('holds no audit record');
  });

  it('never blocks: past its queue bound it drops records and says how many, in the chain', async () => {
    const path = join(dir, 'overload.jsonl');
    const logged: string[] = [];
    const counts: Record<string, number> = {};
    const audit = await openAuditLog(config(path, { checkpointRecords: 50_000 }), {
      log: createLogger((line) => logged.push(line)),
      onRecords: (outcome, n) => { counts[outcome] = (counts[outcome] ?? 0) + n; },
    });
    // All queued in one turn of the event loop, before any flush can run.
    for (let i = 0; i < 100_010; i++) audit.record(event(1));
    await audit.close();
    expect(counts).toEqual({ written: 100_000, dropped: 10 });
    const report = await verify(path);
    expect(report.findings).toEqual([]);
    expect(report.notes).toEqual([expect.stringContaining('the writer dropped 10 records under overload')]);
    expect(logged.map((l) => JSON.parse(l).event)).toEqual(['audit_log_opened', 'audit_records_dropped', 'audit_log_closed']);
  });
});

describe('hopguard audit verify', () => {
  it('exits 0 on a clean log, 1 naming the line on a tampered one', async () => {
    const ok = spawnCli(['audit', 'verify', join(dir, 'clean.jsonl'), '--key', publicPath]);
    expect(await ok.exited).toBe(0);
    expect(ok.stdout()).toContain('verified');
    const bad = spawnCli(['audit', 'verify', join(dir, 'deleted.jsonl'), '--key', publicPath]);
    expect(await bad.exited).toBe(1);
    expect(bad.stdout()).toContain('FAIL deleted: record seq 7 is missing before line 7');
    expect(bad.stdout()).toContain('NOT verified: 1 problem(s)');
  });

  it('wants the public key: a private key is refused without being echoed', async () => {
    const run = spawnCli(['audit', 'verify', join(dir, 'clean.jsonl'), '--key', privatePath]);
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain('this is a private key; give the public key');
    expect(run.stderr()).not.toContain('PRIVATE KEY');
  });
});

describe('runs, writers and the anchored head', () => {
  const cliVerify = (path: string, ...options: string[]) => runCli(['audit', 'verify', path, '--key', publicPath, ...options]);
  const printedHead = (stdout: string) => /^head: ([A-Za-z0-9_-]{43}) /m.exec(stdout)?.[1];
  const lines = (text: string) => text.trimEnd().split('\n');
  const records = (text: string) => lines(text).map((l) => JSON.parse(l));
  const lastLine = (text: string) => lines(text).at(-1)!;
  let runOne: string;
  let twoRuns: string;

  beforeAll(async () => {
    const path = join(dir, 'two-runs.jsonl');
    runOne = await writeLog(path, 3, { writer: 'orders' });
    twoRuns = await writeLog(path, 3, { writer: 'orders' });
  });

  it('names the log, its writer and the run in each run\'s first line and every checkpoint; run 2 chains to run 1\'s closing checkpoint', () => {
    const all = records(twoRuns);
    const opened = all.filter((r) => r.event === 'log_opened');
    expect(opened.map((r) => [r.writer, r.run])).toEqual([['orders', 1], ['orders', 2]]);
    expect(opened[0].log).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(opened[1].log).toBe(opened[0].log);
    const runTwoStart = lines(runOne).length;
    expect(all[runTwoStart]).toMatchObject({ event: 'log_opened', run: 2, previous_closed: true, prev: lineHash(lastLine(runOne)) });
    expect(all[runTwoStart - 1]).toMatchObject({ event: 'checkpoint', closing: true, run: 1 });
    for (const checkpoint of all.filter((r) => r.event === 'checkpoint')) {
      expect(checkpoint).toMatchObject({ log: opened[0].log, writer: 'orders', run: checkpoint.seq <= runTwoStart ? 1 : 2 });
    }
  });

  it('prints the head; a log cut back to the end of run 1 verifies alone but fails against the anchored head', async () => {
    const full = await cliVerify(join(dir, 'two-runs.jsonl'));
    expect(full.code).toBe(0);
    const latest = printedHead(full.stdout);
    expect(latest).toBe(lineHash(lastLine(twoRuns)));
    expect(full.stdout).toContain(`(line ${lines(twoRuns).length}; log ${records(twoRuns)[0].log}, run 2, writer "orders")`);

    const cutPath = join(dir, 'cut-to-run-1.jsonl');
    writeFileSync(cutPath, runOne);
    const cut = await cliVerify(cutPath);
    expect(cut.code).toBe(0);
    expect(printedHead(cut.stdout)).toBe(lineHash(lastLine(runOne)));
    expect(printedHead(cut.stdout)).not.toBe(latest);

    const anchored = await cliVerify(cutPath, '--head', latest!);
    expect(anchored.code).toBe(1);
    expect(anchored.stdout).toContain(`FAIL anchor: the expected head ${latest} is not in this log: it was cut back before that point`);
    expect((await cliVerify(join(dir, 'two-runs.jsonl'), '--head', latest!)).code).toBe(0);
    // A head anchored earlier is still in the grown log: what came after it is noted.
    const grown = await cliVerify(join(dir, 'two-runs.jsonl'), '--head', lineHash(lastLine(runOne)));
    expect(grown.code).toBe(0);
    expect(grown.stdout).toContain(`note: the expected head is line ${lines(runOne).length}; lines ${lines(runOne).length + 1}–${lines(twoRuns).length} were written after it`);
  });

  it('reads a head that starts with "-" (one in 64 do) as the value of --head, not as an option', async () => {
    const dashed = `-${'A'.repeat(42)}`;
    const run = await cliVerify(join(dir, 'two-runs.jsonl'), '--head', dashed);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(`FAIL anchor: the expected head ${dashed} is not in this log`);
  });

  it('refuses another writer\'s log signed with the same key, given the expected writer or head', async () => {
    const otherPath = join(dir, 'other-writer.jsonl');
    await writeLog(otherPath, 3, { writer: 'payments' });
    expect((await cliVerify(otherPath)).code).toBe(0);
    const byWriter = await cliVerify(otherPath, '--writer', 'orders');
    expect(byWriter.code).toBe(1);
    expect(byWriter.stdout).toMatch(/FAIL writer: line 1 opens run 1 of log "[A-Za-z0-9_-]{16}" \(writer "payments"\), not written by "orders"/);
    const byHead = await cliVerify(otherPath, '--head', lineHash(lastLine(twoRuns)));
    expect(byHead.code).toBe(1);
    expect(byHead.stdout).toContain('FAIL anchor:');
    expect((await cliVerify(join(dir, 'two-runs.jsonl'), '--writer', 'orders')).code).toBe(0);
  });

  it('detects run 1\'s closing lines deleted: run 2 no longer continues it', async () => {
    const path = join(dir, 'run-1-end-deleted.jsonl');
    const all = lines(twoRuns);
    const runTwoStart = lines(runOne).length;
    writeFileSync(path, `${[...all.slice(0, runTwoStart - 2), ...all.slice(runTwoStart)].join('\n')}\n`);
    const run = await cliVerify(path);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(`FAIL spliced: line ${runTwoStart - 1} opens run 2 of log "${records(twoRuns)[0].log}" (writer "orders") but does not continue line ${runTwoStart - 2}: the end of the run before was deleted`);
  });

  it('detects another log\'s run spliced in, even behind a line that looks torn by a crash', async () => {
    // Log B: same key, same record counts (so its seqs line up), another writer.
    const otherPath = join(dir, 'other-two-runs.jsonl');
    await writeLog(otherPath, 3, { writer: 'orders' });
    const other = lines(await writeLog(otherPath, 3, { writer: 'orders' }));
    const runTwoStart = lines(runOne).length;
    const spliced = [...lines(runOne), '{"seq":', ...other.slice(runTwoStart)];
    const path = join(dir, 'spliced.jsonl');
    writeFileSync(path, `${spliced.join('\n')}\n`);
    const run = await cliVerify(path);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(`FAIL malformed: line ${runTwoStart + 1} is not an audit record`);
    expect(run.stdout).toMatch(new RegExp(`FAIL spliced: line ${runTwoStart + 2} opens run 2 of log "[^"]+" \\(writer "orders"\\) after run 1 of log "${records(runOne)[0].log}" \\(writer "orders"\\): another log's run was spliced in`));
  });

  it('after a crash that left a torn line and its newline, the next run goes on from the last record', async () => {
    const path = join(dir, 'torn-then-newline.jsonl');
    writeFileSync(path, `${lines(runOne).slice(0, -2).join('\n')}\n{"seq":${lines(runOne).length - 1},"ti\n`);
    const text = await writeLog(path, 1, { writer: 'orders' });
    // Line n-1 is the torn one; run 2 opens on line n, chained to line n-2.
    const opened = JSON.parse(lines(text)[lines(runOne).length - 1]!);
    expect(opened).toMatchObject({ event: 'log_opened', run: 2, previous_closed: false, prev: lineHash(lines(runOne).at(-3)!) });
    const run = await cliVerify(path);
    expect(run.stdout).toContain(`FAIL malformed: line ${lines(runOne).length - 1} is not an audit record`);
    expect(run.stdout).toContain('NOT verified: 1 problem(s)');
  });

  it('refuses a log written before runs had identities unless told, and a new run on it starts run 1 of a new log id', async () => {
    const path = join(dir, 'legacy.jsonl');
    const key = readEd25519Key(privatePath, 'private');
    const opened = JSON.stringify({ seq: 1, time: '2026-01-01T00:00:00.000Z', event: 'log_opened', prev: GENESIS });
    const record = JSON.stringify({ seq: 2, time: '2026-01-01T00:00:01.000Z', event: 'validation', decision: 'deny', prev: lineHash(opened) });
    const closing = signCheckpoint(JSON.stringify({
      seq: 3, time: '2026-01-01T00:00:02.000Z', event: 'checkpoint', records: 2, key: keyId(key), closing: true, prev: lineHash(record),
    }), key);
    writeFileSync(path, `${opened}\n${record}\n${closing}\n`);
    const refused = await cliVerify(path);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain('FAIL legacy: lines 1–3 were written before audit logs named their log, writer and runs');
    const accepted = await cliVerify(path, '--allow-legacy');
    expect(accepted.code).toBe(0);
    expect(accepted.stdout).toContain('note: lines 1–3 were written before audit logs named their log, writer and runs');

    const resumed = records(await writeLog(path, 1, { writer: 'orders' }));
    expect(resumed[3]).toMatchObject({ event: 'log_opened', writer: 'orders', run: 1, previous_closed: true, prev: lineHash(closing) });
    const after = await cliVerify(path, '--allow-legacy');
    expect(after.code).toBe(0);
    expect(after.stdout).toContain(`run 1, writer "orders")`);
    expect((await cliVerify(path, '--allow-legacy', '--writer', 'orders')).stdout).toContain('FAIL writer: lines 1–3 name no writer');
  });

  it('refuses a --head that is not a head, without reading the log', async () => {
    const run = await cliVerify(join(dir, 'two-runs.jsonl'), '--head', 'not-a-head');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--head expects a head as audit verify prints it');
  });
});
