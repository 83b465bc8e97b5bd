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
