/**
 * The soak: a paced load of checks, each a request never sent before, for a chosen time, with
 * the server's RSS (all its processes, from /proc) and live heap (gc-trace.ts) sampled every few
 * seconds. It reports checks/s and latency over the run and per sample, the outcomes, and
 * whether RSS and the live heap plateaued: each is still growing when the least-squares slope
 * of its samples in the run's last half is above zero by more than two standard errors (V8
 * grows and returns heap in steps: that is the noise).
 */

import type { GrpcLoad } from './grpc-load.js';
import { percentile } from './h2load.js';
import { cpuSeconds, machineSeconds, peakRssMb, processTree, resetPeakRss, rssMb, type ServerProcess } from './processes.js';

/** Fewer samples in the last half tell nothing about a slope. */
const MIN_SAMPLES = 4;
/** How long in-flight checks may take to answer once the run's time is up. */
const DRAIN_MS = 10_000;

export interface SoakSettings {
  seconds: number;
  /** Checks a second; 0: as fast as `concurrency` checks in flight allow. */
  rate: number;
  /** At most this many checks in flight. */
  concurrency: number;
  sampleSeconds: number;
}

export interface SoakInput extends SoakSettings {
  server: ServerProcess;
  load: GrpcLoad;
  /** A framed CheckRequest never sent before, or undefined if none is ready yet. */
  nextRequest(): Buffer | undefined;
  /** 'allow' or the deny code of a CheckResponse. */
  outcome(message: Buffer): string;
  /** The server's live heap, MB, if known. */
  liveHeapMb(): number | undefined;
  say(line: string): void;
}

export interface Sample {
  /** Seconds since the load started. */
  t: number;
  rssMb: number;
  /** What the last full GC of each isolate left, summed; null before the first. */
  liveHeapMb: number | null;
  processes: number;
  /** Over the interval since the previous sample. */
  checksPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** The server's CPU, all threads and processes. */
  cores: number;
  /** Cores busy with anything else: this driver, and whatever else runs on the machine. */
  otherCores: number;
  /** Cores the hypervisor took from this machine: above ~0.1, latency is noisy. */
  stolenCores: number;
}

export interface Trend {
  fromS: number;
  toS: number;
  samples: number;
  slopeMbPerMin: number;
  /** Two standard errors of the slope. */
  slopeErrorMbPerMin: number;
  /** Growth over the last half ÷ the checks answered in it. */
  bytesPerCheck: number;
  /** Undefined: too few samples to tell. */
  plateaued: boolean | undefined;
}

export interface SoakResult {
  checks: number;
  seconds: number;
  rate: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  outcomes: Record<string, number>;
  errors: Record<string, number>;
  rssAtStartMb: number;
  rssAtEndMb: number;
  peakRssMb: number;
  /** CPU of this process (the load client and the token signer) ÷ the run's seconds. */
  loadCores: number;
  samples: Sample[];
  lastHalf: Trend;
  /** The same fit of the live heap. */
  heapLastHalf: Trend;
  /** Set when the server exited during the run. */
  exited?: string;
  verdict: string;
  heapVerdict: string;
}

export async function soak(input: SoakInput): Promise<SoakResult> {
  const { server, load, rate, concurrency, say } = input;
  const pid = server.child.pid!;
  const ms = (values: number[], p: number) => percentile(Float64Array.from(values).sort(), p) / 1000;
  const latencies: number[] = [];
  const outcomes: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let interval: number[] = [];
  let sent = 0;
  let inFlight = 0;
  let exited: string | undefined;
  /** A request that could not be made: ends the run, and the soak throws it. */
  let failed: unknown;
  server.child.once('exit', (code, signal) => { exited = `exited (${code ?? signal}) during the soak:\n${server.stderr().slice(-2000)}`; });

  resetPeakRss(processTree(pid));
  const rssAtStartMb = rssMb(processTree(pid));
  const loadCpuBefore = process.cpuUsage();
  const started = performance.now();
  const end = started + input.seconds * 1000;
  let last = { at: started, cpu: cpuSeconds(processTree(pid)), machine: machineSeconds() };
  const samples: Sample[] = [];
  say(`  ${'t s'.padStart(5)} ${'RSS MB'.padStart(7)} ${'heap MB'.padStart(7)} ${'checks/s'.padStart(8)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'cores'.padStart(5)} ${'other cores'.padStart(11)} ${'stolen'.padStart(6)}`);
  const sample = () => {
    const pids = processTree(pid);
    const now = performance.now();
    const cpu = cpuSeconds(pids);
    const machine = machineSeconds();
    const seconds = (now - last.at) / 1000;
    const s: Sample = {
      t: (now - started) / 1000, rssMb: rssMb(pids), liveHeapMb: input.liveHeapMb() ?? null, processes: pids.length, checksPerS: interval.length / seconds,
      p50Ms: ms(interval, 0.5), p99Ms: ms(interval, 0.99), cores: (cpu - last.cpu) / seconds,
      otherCores: (machine.busy - last.machine.busy - (cpu - last.cpu)) / seconds, stolenCores: (machine.stolen - last.machine.stolen) / seconds,
    };
    samples.push(s);
    say(`  ${s.t.toFixed(0).padStart(5)} ${s.rssMb.toFixed(1).padStart(7)} ${(s.liveHeapMb?.toFixed(1) ?? '-').padStart(7)} ${Math.round(s.checksPerS).toString().padStart(8)} ${s.p50Ms.toFixed(2).padStart(7)} ${s.p99Ms.toFixed(2).padStart(7)} ${s.cores.toFixed(2).padStart(5)} ${s.otherCores.toFixed(2).padStart(11)} ${s.stolenCores.toFixed(2).padStart(6)}`);
    interval = [];
    last = { at: now, cpu, machine };
  };

  const answered = (latencyUs: number, outcome: string) => {
    latencies.push(latencyUs);
    interval.push(latencyUs);
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  };
  /** Sends what the schedule says is due, within the in-flight bound. */
  const pump = () => {
    const now = performance.now();
    if (now >= end || exited || failed) return;
    let due = rate > 0 ? Math.floor((rate * (now - started)) / 1000) - sent : Infinity;
    while (due-- > 0 && inFlight < concurrency) {
      let frame: Buffer | undefined;
      try {
        frame = input.nextRequest();
      } catch (err) {
        failed = err;
      }
      if (!frame) return;
      sent++;
      inFlight++;
      load.send(frame).then((answer) => answered(answer.latencyUs, input.outcome(answer.message))).catch((err: Error) => {
        errors[err.message] = (errors[err.message] ?? 0) + 1;
      }).finally(() => {
        inFlight--;
        pump();
      });
    }
  };
  const pacer = setInterval(pump, 1);
  const sampler = setInterval(sample, input.sampleSeconds * 1000);
  await new Promise<void>((resolve) => {
    const done = setInterval(() => {
      const now = performance.now();
      if (exited || (failed && inFlight === 0) || (now >= end && (inFlight === 0 || now >= end + DRAIN_MS))) {
        clearInterval(done);
        resolve();
      }
    }, 5);
  });
  clearInterval(pacer);
  clearInterval(sampler);
  if (failed) throw failed;
  const seconds = (performance.now() - started) / 1000;
  // The drain's answers, unless a sample has just been taken.
  if (!exited && performance.now() - last.at > 1000) sample();
  const loadCpu = process.cpuUsage(loadCpuBefore);

  const lastHalf = trend(samples, input.seconds / 2, 'rssMb');
  const heapLastHalf = trend(samples, input.seconds / 2, 'liveHeapMb');
  const rssAtEndMb = samples.at(-1)?.rssMb ?? rssAtStartMb;
  return {
    checks: latencies.length, seconds, rate: latencies.length / seconds,
    p50Ms: ms(latencies, 0.5), p99Ms: ms(latencies, 0.99), p999Ms: ms(latencies, 0.999),
    outcomes, errors, rssAtStartMb, rssAtEndMb, peakRssMb: peakRssMb(processTree(pid)),
    loadCores: (loadCpu.user + loadCpu.system) / 1e6 / seconds,
    samples, lastHalf, heapLastHalf, ...(exited && { exited }),
    verdict: exited ? `the server ${exited.split('\n')[0]}` : verdictOf('RSS', lastHalf),
    heapVerdict: verdictOf('the live heap (what full GCs left)', heapLastHalf),
  };
}

function verdictOf(what: string, half: Trend): string {
  if (half.plateaued === undefined) return `too short to tell: ${half.samples} samples in the last half, ${MIN_SAMPLES} needed (run longer or sample more often)`;
  const slope = `${half.slopeMbPerMin >= 0 ? '+' : ''}${half.slopeMbPerMin.toFixed(1)} ± ${half.slopeErrorMbPerMin.toFixed(1)} MB/min`;
  const span = `over the last half (${half.fromS.toFixed(0)}–${half.toS.toFixed(0)} s, least-squares over ${half.samples} samples, ± two standard errors)`;
  return half.plateaued
    ? `${what} plateaued: ${slope} ${span}, no growth beyond the noise`
    : `${what} still growing: ${slope} ${span}, ~${Math.round(half.bytesPerCheck)} B per check`;
}

/** Least-squares fit of `field` over the samples from `fromS` on that have it. */
function trend(samples: Sample[], fromS: number, field: 'rssMb' | 'liveHeapMb'): Trend {
  const half = samples.filter((s) => s.t >= fromS && s[field] !== null).map((s) => ({ ...s, mb: s[field]! }));
  const n = half.length;
  const meanT = half.reduce((sum, s) => sum + s.t, 0) / n;
  const meanMb = half.reduce((sum, s) => sum + s.mb, 0) / n;
  const covariance = half.reduce((sum, s) => sum + (s.t - meanT) * (s.mb - meanMb), 0);
  const variance = half.reduce((sum, s) => sum + (s.t - meanT) ** 2, 0);
  const slopeMbPerS = n > 1 && variance > 0 ? covariance / variance : 0;
  const residuals = half.reduce((sum, s) => sum + (s.mb - meanMb - slopeMbPerS * (s.t - meanT)) ** 2, 0);
  const standardError = n > 2 && variance > 0 ? Math.sqrt(residuals / (n - 2) / variance) : Number.NaN;
  const span = n > 1 ? half[n - 1]!.t - half[0]!.t : 0;
  // The checks answered between the first and the last sample of the half.
  const checks = half.slice(1).reduce((sum, s, i) => sum + s.checksPerS * (s.t - half[i]!.t), 0);
  return {
    fromS: half[0]?.t ?? fromS,
    toS: half[n - 1]?.t ?? fromS,
    samples: n,
    slopeMbPerMin: slopeMbPerS * 60,
    slopeErrorMbPerMin: 2 * standardError * 60,
    bytesPerCheck: checks > 0 ? (slopeMbPerS * span * 1024 * 1024) / checks : 0,
    plateaued: n < MIN_SAMPLES ? undefined : slopeMbPerS - 2 * standardError <= 0,
  };
}
