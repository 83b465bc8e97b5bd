import { execFileSync } from 'node:child_process';
import { appendFileSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { authzYaml, CHECKOUT, createFixtures, READ_ORDERS_ROUTES_YAML, type Fixtures } from './support/harness.js';
import { writeAuditKeyPair } from './support/audit-keys.js';
import { runCli, startSidecar, type SidecarProcess } from './support/process.js';

/**
 * The audit log of a real `hopguard authz` process on a real full disk: a 256 KiB tmpfs that
 * a filler file fills to ENOSPC and frees again.
 */

let fixtures: Fixtures;
let disk: string;
let publicKeyPath: string;

beforeAll(async () => {
  fixtures = await createFixtures();
  publicKeyPath = writeAuditKeyPair(fixtures.dir).publicPath;
  disk = mkdtempSync(join(tmpdir(), 'hopguard-full-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', disk], { stdio: 'pipe' });
  } catch (err) {
    rmSync(disk, { recursive: true, force: true });
    throw new Error(`these tests need a small tmpfs to fill (run them as root, or with CAP_SYS_ADMIN): mount -t tmpfs failed: ${(err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message}`);
  }
});
afterAll(() => {
  if (disk) {
    execFileSync('umount', [disk]);
    rmSync(disk, { recursive: true, force: true });
  }
  fixtures?.cleanup();
});

const filler = () => join(disk, 'filler');

/** Writes the filler until the disk has no page left (the audit file's last page may still have room). */
function fillDisk(): void {
  const fd = openSync(filler(), 'a');
  const page = Buffer.alloc(4096, 0x78);
  try {
    for (;;) writeSync(fd, page);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}

const freeDisk = () => unlinkSync(filler());
afterEach(() => rmSync(filler(), { force: true }));

function auditConfig(name: string, { flush = '20ms' } = {}): { config: string; file: string } {
  const config = join(fixtures.dir, `${name}.yaml`);
  const file = join(disk, `${name}.jsonl`);
  writeFileSync(config, `${authzYaml(fixtures)}routes:
  - name: read-orders
    path_prefix: /orders/
audit:
  output: ${file}
  signing_key_file: audit.pem
  writer: orders-sidecar
  flush_interval: ${flush}
`);
  return { config, file };
}

const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
/** The file's records; a line that is not one (torn by a short write) is left out. */
const records = (file: string) => lines(file).flatMap((l) => {
  try {
    return [JSON.parse(l)];
  } catch {
    return [];
  }
});
const validations = (file: string) => records(file).filter((r) => r.event === 'validation').length;
const logEvents = (sidecar: SidecarProcess, event: string) =>
  sidecar.proc.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((r) => r.event === event);

/** Denied checks (no token): each is audited. */
async function check(sidecar: SidecarProcess, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const out = await sidecar.envoy.check({ path: '/orders/1', headers: {}, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem });
    expect(out.allowed).toBe(false);
  }
}

async function auditCounts(sidecar: SidecarProcess): Promise<{ written: number; dropped: number }> {
  const text = await (await fetch(`http://${sidecar.admin}/metrics`)).text();
  const count = (outcome: string) => Number(new RegExp(`^hopguard_audit_records_total\\{[^}]*outcome="${outcome}"[^}]*\\} (\\S+)`, 'm').exec(text)?.[1] ?? 0);
  return { written: count('written'), dropped: count('dropped') };
}

/** Waits until /metrics has accounted for `total` records, as written or dropped. */
async function accounted(sidecar: SidecarProcess, total: number) {
  await expect.poll(async () => { const c = await auditCounts(sidecar); return c.written + c.dropped; }, { timeout: 10_000 }).toBeGreaterThanOrEqual(total);
  return auditCounts(sidecar);
}

const verify = (file: string, ...options: string[]) => runCli(['audit', 'verify', file, '--key', publicKeyPath, ...options]);

describe('hopguard authz auditing to a full disk', () => {
  it('counts what it could not write as dropped, logs it once per 10 s, and records the lost seqs in the chain when space returns', async () => {
    const { config, file } = auditConfig('full');
    const sidecar = await startSidecar(config);
    const started = Date.now();
    try {
      await check(sidecar, 20);
      await expect.poll(() => validations(file)).toBe(20);

      fillDisk();
      await check(sidecar, 200);
      const whileFull = await accounted(sidecar, 220);
      // What /metrics calls written is what the file holds, in whole lines. A write still
      // failing (a flush retried while the disk is full) is cut back to a whole line when it
      // fails, so a torn tail may be seen for a moment, never kept.
      await expect.poll(() => lines(file).length - records(file).length, { timeout: 5_000 }).toBe(0);
      expect(whileFull.written).toBe(validations(file));
      expect(whileFull.dropped).toBe(220 - whileFull.written);
      expect(whileFull.dropped).toBeGreaterThan(150);
      const failed = logEvents(sidecar, 'audit_write_failed');
      // Each of the ~50 failed flushes a second would have printed a line: one per 10 s, with a count.
      expect(failed.length).toBeGreaterThanOrEqual(1);
      expect(failed.length).toBeLessThanOrEqual(1 + Math.floor((Date.now() - started) / 10_000));
      expect(failed[0]).toMatchObject({ level: 'error', file, key: 'audit.output', error: 'ENOSPC' });

      freeDisk();
      await check(sidecar, 10);
      const after = await accounted(sidecar, 230);
      expect(after.written + after.dropped).toBe(230);
      // Writes that fitted in the file's last page may have gone through while the disk was full:
      // each loss is recorded by a marker in the first write that succeeds after it.
      const markers = () => records(file).filter((r) => r.event === 'records_dropped');
      await expect.poll(() => markers().reduce((sum, m) => sum + m.count, 0)).toBe(after.dropped);
      expect(after.written).toBe(validations(file));
      for (const marker of markers()) {
        expect(marker).toMatchObject({ reason: 'write_failed', error: 'ENOSPC' });
        expect(marker.lost_seqs[1] - marker.lost_seqs[0] + 1).toBeGreaterThanOrEqual(marker.count);
      }
      const recovered = logEvents(sidecar, 'audit_write_recovered');
      expect(recovered.length).toBeGreaterThanOrEqual(1);
      expect(recovered[0]).toMatchObject({ file, key: 'audit.output', error: 'ENOSPC' });

      const live = await verify(file, '--live');
      expect(live.stdout).not.toContain('FAIL');
      for (const [index, record] of records(file).entries()) {
        if (record.event !== 'records_dropped') continue;
        const [from, to] = record.lost_seqs;
        expect(live.stdout).toContain(`note: line ${index + 1}: seq ${from === to ? from : `${from}–${to}`} lost: not written (ENOSPC since ${record.since}): ${record.count} audit record`);
      }
      expect(live.code).toBe(0);

      // The marker explains its own gap only: a record deleted elsewhere is still a deletion.
      const all = lines(file);
      const tampered = join(fixtures.dir, 'full-tampered.jsonl');
      writeFileSync(tampered, `${all.filter((_, i) => i !== all.length - 3).join('\n')}\n`);
      const deleted = await verify(tampered, '--live');
      expect(deleted.code).toBe(1);
      expect(deleted.stdout).toMatch(/FAIL deleted: record seq \d+ is missing/);
    } finally {
      await sidecar.stop();
    }
    expect(await sidecar.proc.exited).toBe(0);
    const closed = await verify(file);
    expect(closed.stdout).toContain('(closed)');
    expect(closed.code).toBe(0);
  });

  it('exits 1, naming the file, when the closing checkpoint cannot be written', async () => {
    // Records wait for the close: together (~9 KB) they cannot fit in what is left of the file's last page.
    const { config, file } = auditConfig('unclosed', { flush: '1h' });
    const sidecar = await startSidecar(config);
    try {
      await expect.poll(() => records(file).map((r) => r.event)).toEqual(['log_opened']);
      fillDisk();
      await check(sidecar, 40);
    } finally {
      await sidecar.stop();
    }
    expect(await sidecar.proc.exited).toBe(1);
    expect(sidecar.proc.stderr()).toContain(`hopguard: audit.output ${file}: the log was not closed: its closing checkpoint could not be written (ENOSPC); this run lost 40 records`);
    expect(records(file).map((r) => r.event)).toEqual(['log_opened']);
  });

  it('restarted on a still-full disk after a torn last line, serves, names the file, and goes on in a segment that says it follows the torn line', async () => {
    const { config, file } = auditConfig('torn');
    const first = await startSidecar(config);
    await check(first, 3);
    await first.stop();
    expect(await first.proc.exited).toBe(0);
    const whole = records(file).length;
    // A write cut short by the full disk: part of a line, up to the end of the file's last page.
    const torn = `{"seq":${whole + 1},"time":"2026-01-01T00:00:00.000Z","event":"validation","decision":"deny","route":"`;
    appendFileSync(file, torn.padEnd(4096 - (statSync(file).size % 4096), 'x'));
    fillDisk();

    const second = await startSidecar(config);
    try {
      await check(second, 3);
      expect(await second.proc.logEvent('audit_write_failed')).toMatchObject({ file, key: 'audit.output', error: 'ENOSPC' });
      expect(await accounted(second, 3)).toEqual({ written: 0, dropped: 3 });
      freeDisk();
      await check(second, 2);
      await expect.poll(() => records(file).filter((r) => r.event === 'log_opened').length).toBe(2);
      expect(await accounted(second, 5)).toEqual({ written: 2, dropped: 3 });
      expect(validations(file)).toBe(3 + 2);
      expect(records(file).find((r) => r.event === 'records_dropped')).toMatchObject({ reason: 'write_failed', count: 3 });
    } finally {
      await second.stop();
    }
    expect(await second.proc.exited).toBe(0);
    expect(JSON.parse(lines(file)[whole + 1]!)).toMatchObject({ event: 'log_opened', run: 2, follows_torn_line: true, previous_closed: true });
    const report = await verify(file, '--writer', 'orders-sidecar');
    expect(report.stdout).toContain(`note: line ${whole + 1} is a line torn by a crash or a full disk; line ${whole + 2} goes on from line ${whole} and says so`);
    expect(report.stdout).toMatch(/: seq [\d–]+ lost: not written \(ENOSPC since /);
    expect(report.stdout).not.toContain('FAIL');
    expect(report.code).toBe(0);
  });

  it('names the audit file and its config key when it cannot open the log or read the signing key (a configuration error, exit 2)', async () => {
    const missingDir = join(fixtures.dir, 'no-such-dir', 'audit.jsonl');
    const config = join(fixtures.dir, 'unopenable.yaml');
    const yaml = (audit: string) => `${authzYaml(fixtures)}${READ_ORDERS_ROUTES_YAML}audit:\n${audit}`;
    writeFileSync(config, yaml(`  output: ${missingDir}\n  signing_key_file: audit.pem\n`));
    const unopenable = await runCli(['authz', '--config', config]);
    expect(unopenable.code).toBe(2);
    expect(unopenable.stderr).toContain(`hopguard: audit.output: the directory ${join(fixtures.dir, 'no-such-dir')} does not exist`);

    writeFileSync(config, yaml(`  output: ${join(fixtures.dir, 'keyless.jsonl')}\n  signing_key_file: no-such-key.pem\n`));
    const keyless = await runCli(['authz', '--config', config]);
    expect(keyless.code).toBe(2);
    expect(keyless.stderr).toContain(`hopguard: audit.signing_key_file: cannot read ${join(fixtures.dir, 'no-such-key.pem')}: it does not exist (ENOENT)`);
  });
});
