import { parseArgs } from 'node:util';
import { readEd25519Key } from '../audit/audit-chain.js';
import { verifyAuditLog } from '../audit/audit-verify.js';
import { joinValues, UsageError } from './command-line.js';

/** base64url(SHA-256), as lineHash writes it. */
const HEAD = /^[A-Za-z0-9_-]{43}$/;

/**
 * `hopguard audit verify FILE --key PUB [--key PUB…] [--head H] [--writer W] [--live]
 * [--allow-legacy]`: checks the hash chain, the runs and the signed checkpoints with public
 * keys only, and prints the log's head to anchor elsewhere. Exit 0 when the whole log
 * verifies, 1 otherwise, each problem on a line with its line number.
 */
export async function auditCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: joinValues(argv, ['key', 'head', 'writer']),
    allowPositionals: true,
    options: {
      key: { type: 'string', multiple: true },
      head: { type: 'string' },
      writer: { type: 'string' },
      live: { type: 'boolean', default: false },
      'allow-legacy': { type: 'boolean', default: false },
    },
  });
  const [action, file, ...extra] = positionals;
  if (action !== 'verify') throw new UsageError('expected "hopguard audit verify FILE --key PUB"');
  if (!file || extra.length > 0) throw new UsageError('audit verify takes one FILE');
  if (!values.key?.length) throw new UsageError('--key PUB is required (the Ed25519 public key, PEM)');
  const keys = values.key.map((path) => {
    try {
      return readEd25519Key(path, 'public');
    } catch (err) {
      throw new UsageError(`--key ${(err as Error).message}`);
    }
  });
  if (values.head !== undefined && !HEAD.test(values.head)) throw new UsageError('--head expects a head as audit verify prints it (43 base64url characters)');
  if (values.writer === '') throw new UsageError('--writer expects the writer\'s name (audit.writer)');
  const report = await verifyAuditLog(file, keys, {
    live: values.live, allowLegacy: values['allow-legacy'],
    ...(values.head !== undefined && { head: values.head }),
    ...(values.writer !== undefined && { writer: values.writer }),
  });
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  out(`${file}: ${count(report.lines, 'line')}, ${count(report.records, 'record')}, ${count(report.checkpoints, 'checkpoint')}; ` +
    `signed through line ${report.signedThrough}${report.closed ? ' (closed)' : ''}`);
  const run = report.lastRun ? `; log ${report.lastRun.log}, run ${report.lastRun.run}, writer ${JSON.stringify(report.lastRun.writer)}` : '';
  out(`head: ${report.head} (line ${report.headLine}${run})`);
  for (const note of report.notes) out(`note: ${note}`);
  for (const finding of report.findings) out(`FAIL ${finding.kind}: ${finding.message}`);
  out(report.findings.length === 0 ? 'verified' : `NOT verified: ${report.findings.length} problem(s)`);
  return report.findings.length === 0 ? 0 : 1;
}
