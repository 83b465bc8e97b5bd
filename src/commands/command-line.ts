/** Wrong words on the command line: the CLI prints the message and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function requireOption(value: string | undefined, flag: string): string {
  if (!value) throw new UsageError(`${flag} is required`);
  return value;
}

/** `--config FILE` (`-c`), which every serving command takes. */
export const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } as const;

/**
 * `--name VALUE` as `--name=VALUE` for the string options named: parseArgs refuses a separate
 * value starting with `-` as ambiguous, and a base64url value (an audit head) starts with one
 * once in 64.
 */
export function joinValues(argv: readonly string[], names: readonly string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return [...joined, ...argv.slice(i)];
    if (names.includes(arg.slice(2)) && arg.startsWith('--') && i + 1 < argv.length) joined.push(`${arg}=${argv[++i]}`);
    else joined.push(arg);
  }
  return joined;
}
