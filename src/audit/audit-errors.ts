/** Every audit error names the file and the config key that set it: the operator's next step. */

export type AuditFileKey = 'audit.output' | 'audit.signing_key_file';

export function auditFileError(key: AuditFileKey, path: string, problem: string): Error {
  return new Error(`${key} ${path}: ${problem}`);
}

/** An errno code (ENOSPC, EACCES) where there is one: what the operator can look up. */
export function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? (err instanceof Error ? err.message : String(err));
}
