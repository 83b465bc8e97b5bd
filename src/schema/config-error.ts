/**
 * An invalid config file. Every problem is collected before this is thrown, so an
 * operator fixes the file in one pass; nothing starts half-configured.
 *
 * Messages never carry secret values: problems echo at most short values such as an
 * algorithm name, never URLs or free text from the file.
 */

export interface ConfigProblem {
  /** Where in the file, e.g. `issuers[0].algorithms[1]`; empty for the file as a whole. */
  path: string;
  /** What is wrong and what is expected. */
  message: string;
}

export class ConfigError extends Error {
  readonly code = 'invalid_config';
  readonly problems: ConfigProblem[];
  /** The file name, when the config came from a file. */
  readonly source: string | undefined;

  constructor(problems: ConfigProblem[], source?: string, options?: ErrorOptions) {
    super(problems.map((problem) => formatProblem(problem, source)).join('\n'), options);
    this.name = 'ConfigError';
    this.problems = problems;
    this.source = source;
  }
}

function formatProblem({ path, message }: ConfigProblem, source: string | undefined): string {
  return [source, path, message].filter((part) => part !== undefined && part !== '').join(': ');
}
