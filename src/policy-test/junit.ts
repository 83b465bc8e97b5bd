import type { CaseResult } from './run-cases.js';

/** JUnit XML (the shape CI systems read: testsuites > testsuite > testcase > failure) for one cases file. */
export function junitXml(suite: string, results: readonly CaseResult[]): string {
  const failures = results.filter((r) => !r.passed).length;
  const total = results.reduce((sum, r) => sum + r.seconds, 0);
  const cases = results.map((r) => {
    const open = `    <testcase classname="${xml(suite)}" name="${xml(r.name)}" time="${r.seconds.toFixed(4)}"`;
    if (r.passed) return `${open}/>`;
    const message = `expected ${r.expected}, got ${r.actual}`;
    return `${open}>\n      <failure message="${xml(message)}" type="decision">${xml(message)}</failure>\n    </testcase>`;
  });
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites tests="${results.length}" failures="${failures}" time="${total.toFixed(4)}">`,
    `  <testsuite name="${xml(suite)}" tests="${results.length}" failures="${failures}" errors="0" time="${total.toFixed(4)}">`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

function xml(text: string): string {
  // Characters XML 1.0 cannot hold at all are dropped; the five specials are escaped.
  return text.replace(/[^\t\n\r\x20-\uD7FF\uE000-\uFFFD]/gu, '')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}
