// Summary of bench/l4/run.sh: reads the per-run JSON lines the script collected, takes the median of the
// repetitions per (mode, path), prints a table, the ratios b/a and c/b with the floors, and the whole result as JSON.
//
//   node dist/bench/l4/report.js --results results.jsonl --meta meta.json [--json out.json] [--strict]
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

type Mode = 'keepalive' | 'close';
type Path = 'a' | 'r' | 'b' | 'c' | 'o';

/** One measured wrk run, as written by run.sh (latencies in µs, from wrk's histogram). */
interface Run {
  mode: Mode;
  path: Path;
  rep: number;
  client_conns: number;
  backend_conns: number;
  /** PSI "some" CPU stall during the run, % of wall time (null without /proc/pressure) */
  cpu_pressure_pct: number | null;
  /** CPU time of the client side (wrk; + haproxy A for path c) and the server side (nginx; + haproxy B), µs */
  client_cpu_us: number;
  server_cpu_us: number;
  wrk: {
    requests: number;
    duration_us: number;
    p50_us: number;
    p90_us: number;
    p99_us: number;
    errors: Record<string, number>;
  };
}

interface CaseResult {
  mode: Mode;
  path: Path;
  req_per_s: number;
  p50_ms: number;
  p99_ms: number;
  runs_req_per_s: number[];
  /** client connections opened per request (≈1 with Connection: close, ≈0 with keep-alive) */
  conns_per_request: number;
  backend_conns_per_request: number;
  /** median CPU pressure of the runs, % (load from outside the bench, for paths a and b) */
  cpu_pressure_pct: number | null;
  /** runs the medians are taken over: the quiet ones when there are at least MIN_QUIET, else all */
  runs_used: number;
  runs_total: number;
  only_quiet: boolean;
  /** CPU µs per request on each side: unlike req/s, hardly moved by other work on the machine */
  client_cpu_us_per_req: number;
  server_cpu_us_per_req: number;
  errors: number;
}

/** Run-time statistics of the BPF programs on a path's cgroup over one new-connection run (run.sh: paths b, r and o). */
interface BpfCost {
  connects: number;
  ns_per_connect: number;
  programs: { name: string; attach: string; runs: number; ns_per_run: number }[];
}

const MODES: Mode[] = ['keepalive', 'close'];
const PATHS: Path[] = ['a', 'r', 'b', 'c', 'o'];
const PATH_NAMES: Record<Path, string> = {
  a: 'a direct',
  r: 'r bare redir',
  b: 'b kmesh VIP',
  c: 'c 2×haproxy',
  o: 'o kmesh resil',
};
const MODE_NAMES: Record<Mode, string> = {
  keepalive: 'keep-alive',
  close: 'new-conn',
};
/** Above this CPU pressure (%) during paths a, r and b, outside load decides the numbers more than the paths do. */
const BUSY_PCT = 10;
/** Floors for b/a req/s (issue 2, point 10; issue 11, point 6). */
const FLOORS: Record<Mode, number> = { keepalive: 0.97, close: 0.95 };
/** New connections: Kmesh (b) within this of the bare redirect (r), both relative to direct (issue 11, point 6). */
const BARE_GAP: Partial<Record<Mode, number>> = { close: 0.03 };

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const rps = (r: Run) => (r.wrk.requests * 1e6) / r.wrk.duration_us;

/**
 * A run of path a, r or b is "quiet" when the CPU pressure stayed at or below BUSY_PCT: those paths have one
 * process per CPU, so pressure means other work on the machine. Path c has two processes per CPU and always shows
 * its own pressure, so its runs all count.
 */
const quiet = (r: Run) => r.path === 'c' || r.cpu_pressure_pct === null || r.cpu_pressure_pct <= BUSY_PCT;
/** At least this many quiet runs (or pairs) are needed to use only those; otherwise all are used, with a warning. */
const MIN_QUIET = 3;

function summarize(allRuns: Run[]): CaseResult {
  const { mode, path } = allRuns[0];
  const quietRuns = allRuns.filter(quiet);
  const runs = quietRuns.length >= MIN_QUIET ? quietRuns : allRuns;
  const rpss = runs.map(rps);
  const requests = runs.reduce((n, r) => n + r.wrk.requests, 0);
  const sum = (f: (r: Run) => number) => runs.reduce((n, r) => n + f(r), 0);
  return {
    mode,
    path,
    req_per_s: Math.round(median(rpss)),
    p50_ms: median(runs.map((r) => r.wrk.p50_us)) / 1000,
    p99_ms: median(runs.map((r) => r.wrk.p99_us)) / 1000,
    runs_req_per_s: rpss.map((x) => Math.round(x)),
    conns_per_request: sum((r) => r.client_conns) / requests,
    backend_conns_per_request: sum((r) => r.backend_conns) / requests,
    client_cpu_us_per_req: sum((r) => r.client_cpu_us) / requests,
    server_cpu_us_per_req: sum((r) => r.server_cpu_us) / requests,
    cpu_pressure_pct: runs.every((r) => r.cpu_pressure_pct !== null)
      ? median(runs.map((r) => r.cpu_pressure_pct ?? 0))
      : null,
    errors: sum((r) => Object.values(r.wrk.errors).reduce((n, e) => n + e, 0)),
    runs_used: runs.length,
    runs_total: allRuns.length,
    only_quiet: runs.every(quiet),
  };
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));

function main(): number {
  const { values } = parseArgs({
    options: {
      results: { type: 'string' },
      meta: { type: 'string' },
      json: { type: 'string' },
      strict: { type: 'boolean', default: false },
    },
  });
  if (!values.results) throw new Error('--results FILE is required');
  const runs: Run[] = readFileSync(values.results, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Run);
  const meta: unknown = values.meta ? JSON.parse(readFileSync(values.meta, 'utf8')) : {};

  const cases: CaseResult[] = [];
  for (const mode of MODES) {
    for (const path of PATHS) {
      const rs = runs.filter((r) => r.mode === mode && r.path === path);
      if (rs.length > 0) cases.push(summarize(rs));
    }
  }
  const get = (mode: Mode, path: Path) => cases.find((c) => c.mode === mode && c.path === path);

  /**
   * Median over the repetitions of x_i / y_i, where run i of path x and run i of path y ran back to back
   * (run.sh orders a b c, c b a, …) and so saw the same background load on a shared machine.
   */
  const noisyRatios: string[] = [];
  const paired = (mode: Mode, x: Path, y: Path, f: (r: Run) => number) => {
    const all: number[] = [];
    const quietOnes: number[] = [];
    for (const rx of runs.filter((r) => r.mode === mode && r.path === x)) {
      const ry = runs.find((r) => r.mode === mode && r.path === y && r.rep === rx.rep);
      if (!ry) continue;
      all.push(f(rx) / f(ry));
      if (quiet(rx) && quiet(ry)) quietOnes.push(f(rx) / f(ry));
    }
    if (all.length === 0) return null;
    if (quietOnes.length >= MIN_QUIET) return round(median(quietOnes), 3);
    const name = `${mode} ${x}/${y}`;
    if (!noisyRatios.includes(name)) noisyRatios.push(name);
    return round(median(all), 3);
  };
  const cpuPerReq = (c: CaseResult) => c.client_cpu_us_per_req + c.server_cpu_us_per_req;
  const cpuRatio = (x?: CaseResult, y?: CaseResult) => (x && y ? round(cpuPerReq(x) / cpuPerReq(y), 3) : null);
  const ratios: Record<string, Record<string, number | null>> = {};
  const floors: Record<
    string,
    { floor: number; b_over_a: number | null; r_over_a?: number | null; max_gap_to_r?: number; met: boolean | null }
  > = {};
  for (const mode of MODES) {
    const [a, b] = [get(mode, 'a'), get(mode, 'b')];
    ratios[mode] = {
      b_over_a_req_per_s: paired(mode, 'b', 'a', rps),
      r_over_a_req_per_s: paired(mode, 'r', 'a', rps),
      b_over_r_req_per_s: paired(mode, 'b', 'r', rps),
      /** path o (outlier detection + least request) against direct and against the plain kmesh path */
      o_over_a_req_per_s: paired(mode, 'o', 'a', rps),
      o_over_b_req_per_s: paired(mode, 'o', 'b', rps),
      c_over_b_req_per_s: paired(mode, 'c', 'b', rps),
      b_over_a_p50: paired(mode, 'b', 'a', (r) => r.wrk.p50_us),
      c_over_b_p50: paired(mode, 'c', 'b', (r) => r.wrk.p50_us),
      b_over_a_p99: paired(mode, 'b', 'a', (r) => r.wrk.p99_us),
      c_over_b_p99: paired(mode, 'c', 'b', (r) => r.wrk.p99_us),
      /** CPU per request, whole path (client + server side): robust to other load on the machine */
      b_over_a_cpu_per_req: cpuRatio(b, a),
      c_over_b_cpu_per_req: cpuRatio(get(mode, 'c'), b),
      /** for reference: the ratio of the two medians instead of the median of paired ratios */
      b_over_a_req_per_s_of_medians: a && b ? round(b.req_per_s / a.req_per_s, 3) : null,
    };
    const ba = ratios[mode].b_over_a_req_per_s;
    const ra = ratios[mode].r_over_a_req_per_s;
    const gap = BARE_GAP[mode];
    const nearBare = gap === undefined || ra === null || ba === null ? null : ba >= ra - gap;
    floors[mode] = {
      floor: FLOORS[mode],
      b_over_a: ba,
      ...(gap !== undefined ? { r_over_a: ra, max_gap_to_r: gap } : {}),
      met: ba === null ? null : ba >= FLOORS[mode] && nearBare !== false,
    };
  }

  // --- table ---
  const lines: string[] = [];
  const row = (cells: string[], widths: number[]) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const widths = [10, 12, 9, 7, 7, 7, 8, 6, 8, 5, 8, 8];
  lines.push(
    row(
      [
        'mode',
        'path',
        'req/s',
        'spread',
        'p50 ms',
        'p99 ms',
        'conn/req',
        'errors',
        'cpu busy',
        'runs',
        'µs/req',
        'µs/req',
      ],
      widths,
    ),
  );
  lines.push(row(['', '', '', '', '', '', '', '', '', '', 'client', 'server'], widths));
  for (const c of cases) {
    lines.push(
      row(
        [
          MODE_NAMES[c.mode],
          PATH_NAMES[c.path],
          c.req_per_s.toLocaleString('en-US'),
          `±${((50 * (Math.max(...c.runs_req_per_s) - Math.min(...c.runs_req_per_s))) / c.req_per_s).toFixed(0)}%`,
          c.p50_ms.toFixed(3),
          c.p99_ms.toFixed(3),
          c.conns_per_request.toFixed(3),
          String(c.errors),
          c.cpu_pressure_pct === null ? 'n/a' : `${c.cpu_pressure_pct.toFixed(0)}%`,
          `${c.runs_used}/${c.runs_total}`,
          c.client_cpu_us_per_req.toFixed(1),
          c.server_cpu_us_per_req.toFixed(1),
        ],
        widths,
      ),
    );
  }
  lines.push('');
  const fmt = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3));
  for (const mode of MODES) {
    const r = ratios[mode];
    const f = floors[mode];
    const verdict = f.met === null ? 'not checked' : f.met ? 'met' : 'NOT MET';
    const bare =
      f.max_gap_to_r === undefined ? '' : `, r/a ${fmt(r.r_over_a_req_per_s ?? null)} (b ≥ r − ${f.max_gap_to_r})`;
    lines.push(
      `${MODE_NAMES[mode].padEnd(10)}  req/s b/a ${fmt(r.b_over_a_req_per_s)} (floor ${f.floor}${bare}: ${verdict})` +
        `   b/r ${fmt(r.b_over_r_req_per_s)}` +
        `   c/b ${fmt(r.c_over_b_req_per_s)}   p50 b/a ${fmt(r.b_over_a_p50)}  c/b ${fmt(r.c_over_b_p50)}` +
        `   cpu/req b/a ${fmt(r.b_over_a_cpu_per_req)}  c/b ${fmt(r.c_over_b_cpu_per_req)}` +
        (r.o_over_a_req_per_s === null || r.o_over_a_req_per_s === undefined
          ? ''
          : `   o/a ${fmt(r.o_over_a_req_per_s)} (o/a − b/a ${fmt(
              r.b_over_a_req_per_s === null ? null : r.o_over_a_req_per_s - r.b_over_a_req_per_s,
            )})  o/b ${fmt(r.o_over_b_req_per_s ?? null)}`),
    );
  }
  lines.push(
    '(req/s, p50, p99: medians of the runs used; spread: half the range of their req/s over the median;',
    ' conn/req: client connections per request; cpu busy: CPU pressure (PSI "some") during the runs;',
    ` runs: used/measured — for a and b only quiet runs (cpu busy <= ${BUSY_PCT}%) when there are ${MIN_QUIET}+;`,
    ' µs/req: CPU time per request of the client side (wrk, + haproxy A) and the server side (nginx, + haproxy B);',
    ' ratios: median of b_i/a_i, c_i/b_i over back-to-back runs, quiet pairs only when there are enough)',
  );
  const costs = meta as { kmesh_bpf?: BpfCost | null; bare_bpf?: BpfCost | null; resilient_bpf?: BpfCost | null };
  for (const [label, bpf] of [
    ['kmesh BPF per connection (path b', costs.kmesh_bpf],
    ['bare redirect BPF per connection (path r', costs.bare_bpf],
    ['kmesh resilient BPF per connection (path o', costs.resilient_bpf],
  ] as const) {
    if (!bpf) continue;
    const each = bpf.programs.map((p) => `${p.name} ${p.ns_per_run} ns × ${(p.runs / bpf.connects).toFixed(1)}`);
    lines.push(
      `${label}, BPF run-time stats, ${bpf.connects} connects): ${bpf.ns_per_connect} ns = ${each.join(' + ')}`,
    );
  }
  const warnings = [
    ...cases
      .filter((c) => !c.only_quiet)
      .map((c) => `${c.mode} ${c.path}: fewer than ${MIN_QUIET} quiet runs, medians include busy runs`),
    ...noisyRatios.map((n) => `${n}: fewer than ${MIN_QUIET} quiet pairs, the ratio includes busy runs`),
  ];
  if (warnings.length > 0) {
    lines.push(
      `WARNING: other work competed for the CPUs (cpu busy > ${BUSY_PCT}% during paths a, r, b): ${warnings.join('; ')}.`,
      '  These numbers are unreliable — rerun on an idle machine (--wait-quiet 600).',
    );
  }
  console.log(lines.join('\n'));

  const result = {
    meta,
    cases: cases.map((c) => ({
      ...c,
      conns_per_request: round(c.conns_per_request, 4),
      backend_conns_per_request: round(c.backend_conns_per_request, 4),
      client_cpu_us_per_req: round(c.client_cpu_us_per_req, 2),
      server_cpu_us_per_req: round(c.server_cpu_us_per_req, 2),
    })),
    ratios,
    floors,
    warnings,
  };
  const json = JSON.stringify(result, null, 2);
  console.log(`\nJSON:\n${json}`);
  // the file also keeps every run, so the numbers can be re-examined later
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ ...result, runs }, null, 2)}\n`);

  const missed = Object.values(floors).some((f) => f.met === false);
  return values.strict && missed ? 3 : 0;
}

process.exitCode = main();
