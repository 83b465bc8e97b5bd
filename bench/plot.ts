/** A self-contained SVG: p50, p99 and p99.9 latency per scenario, grouped bars on a log scale. */

export interface LatencyRow {
  label: string;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
}

const SERIES = [
  { key: 'p50Ms', name: 'p50', color: '#4c78a8' },
  { key: 'p99Ms', name: 'p99', color: '#f58518' },
  { key: 'p999Ms', name: 'p99.9', color: '#e45756' },
] as const;

export function latencySvg(title: string, rows: LatencyRow[]): string {
  const width = Math.max(640, 110 * rows.length + 120);
  const height = 420;
  const left = 70;
  const top = 50;
  const plotHeight = 260;
  const values = rows.flatMap((r) => SERIES.map((s) => r[s.key])).filter((v) => v > 0 && Number.isFinite(v));
  const low = Math.pow(10, Math.floor(Math.log10(Math.min(...values, 1))));
  const high = Math.pow(10, Math.ceil(Math.log10(Math.max(...values, 10))));
  const y = (ms: number) => top + plotHeight * (1 - (Math.log10(Math.max(ms, low)) - Math.log10(low)) / (Math.log10(high) - Math.log10(low)));
  const group = (width - left - 20) / rows.length;
  const bar = Math.min(26, (group - 16) / SERIES.length);
  const parts: string[] = [];
  parts.push(`<text x="${left}" y="24" font-size="16" font-weight="bold">${escape(title)}</text>`);
  for (let decade = low; decade <= high; decade *= 10) {
    const yy = y(decade).toFixed(1);
    parts.push(`<line x1="${left}" x2="${width - 20}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 8}" y="${yy}" font-size="11" text-anchor="end" dominant-baseline="middle">${decade >= 1 ? decade : decade.toPrecision(1)} ms</text>`);
  }
  rows.forEach((row, i) => {
    const x0 = left + i * group + (group - bar * SERIES.length) / 2;
    SERIES.forEach((s, j) => {
      const value = row[s.key];
      const yy = y(value);
      parts.push(`<rect x="${(x0 + j * bar).toFixed(1)}" y="${yy.toFixed(1)}" width="${(bar - 2).toFixed(1)}" height="${(top + plotHeight - yy).toFixed(1)}" fill="${s.color}"><title>${escape(row.label)} ${s.name}: ${value.toFixed(2)} ms</title></rect>`);
    });
    const cx = left + i * group + group / 2;
    parts.push(`<text transform="translate(${cx.toFixed(1)},${top + plotHeight + 14}) rotate(30)" font-size="11">${escape(row.label)}</text>`);
  });
  SERIES.forEach((s, j) => {
    parts.push(`<rect x="${left + j * 80}" y="${height - 24}" width="12" height="12" fill="${s.color}"/>`);
    parts.push(`<text x="${left + j * 80 + 16}" y="${height - 14}" font-size="12">${s.name}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">\n`
    + `<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`;
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
