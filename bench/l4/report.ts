// Summary of bench/l4/run.sh: reads the per-run JSON lines the script collected, takes the median of the
// repetitions per (mode, path), prints a table, the ratios b/a and c/b with the floors, and the whole result as JSON.
//
//   node dist/bench/l4/report.js --results results.jsonl --meta meta.json [--json out.json] [--strict]
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

type Mode = "keepalive" | "close";
type Path = "a" | "b" | "c";

/** One measured wrk run, as written by run.sh (latencies in µs, from wrk's histogram). */
interface Run {
	mode: Mode;
	path: Path;
	rep: number;
	client_conns: number;
	backend_conns: number;
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
	errors: number;
}

const MODES: Mode[] = ["keepalive", "close"];
const PATHS: Path[] = ["a", "b", "c"];
const PATH_NAMES: Record<Path, string> = {
	a: "a direct",
	b: "b kmesh VIP",
	c: "c 2×haproxy",
};
const MODE_NAMES: Record<Mode, string> = {
	keepalive: "keep-alive",
	close: "new-conn",
};
/** Floors for b/a req/s (issue 2, point 10). */
const FLOORS: Record<Mode, number> = { keepalive: 0.97, close: 0.93 };

function median(xs: number[]): number {
	const s = [...xs].sort((x, y) => x - y);
	const m = Math.floor(s.length / 2);
	return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function summarize(runs: Run[]): CaseResult {
	const { mode, path } = runs[0];
	const rps = runs.map((r) => (r.wrk.requests * 1e6) / r.wrk.duration_us);
	const requests = runs.reduce((n, r) => n + r.wrk.requests, 0);
	const sum = (f: (r: Run) => number) => runs.reduce((n, r) => n + f(r), 0);
	return {
		mode,
		path,
		req_per_s: Math.round(median(rps)),
		p50_ms: median(runs.map((r) => r.wrk.p50_us)) / 1000,
		p99_ms: median(runs.map((r) => r.wrk.p99_us)) / 1000,
		runs_req_per_s: rps.map((x) => Math.round(x)),
		conns_per_request: sum((r) => r.client_conns) / requests,
		backend_conns_per_request: sum((r) => r.backend_conns) / requests,
		errors: sum((r) => Object.values(r.wrk.errors).reduce((n, e) => n + e, 0)),
	};
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));

function main(): number {
	const { values } = parseArgs({
		options: {
			results: { type: "string" },
			meta: { type: "string" },
			json: { type: "string" },
			strict: { type: "boolean", default: false },
		},
	});
	if (!values.results) throw new Error("--results FILE is required");
	const runs: Run[] = readFileSync(values.results, "utf8")
		.split("\n")
		.filter((l) => l.trim() !== "")
		.map((l) => JSON.parse(l) as Run);
	const meta: unknown = values.meta
		? JSON.parse(readFileSync(values.meta, "utf8"))
		: {};

	const cases: CaseResult[] = [];
	for (const mode of MODES) {
		for (const path of PATHS) {
			const rs = runs.filter((r) => r.mode === mode && r.path === path);
			if (rs.length > 0) cases.push(summarize(rs));
		}
	}
	const get = (mode: Mode, path: Path) =>
		cases.find((c) => c.mode === mode && c.path === path);

	const ratios: Record<string, Record<string, number | null>> = {};
	const floors: Record<
		string,
		{ floor: number; b_over_a: number | null; met: boolean | null }
	> = {};
	for (const mode of MODES) {
		const [a, b, c] = PATHS.map((p) => get(mode, p));
		const ratio = (x?: CaseResult, y?: CaseResult) =>
			x && y ? round(x.req_per_s / y.req_per_s, 3) : null;
		const lat = (x?: CaseResult, y?: CaseResult) =>
			x && y ? round(x.p50_ms / y.p50_ms, 3) : null;
		ratios[mode] = {
			b_over_a_req_per_s: ratio(b, a),
			c_over_b_req_per_s: ratio(c, b),
			b_over_a_p50: lat(b, a),
			c_over_b_p50: lat(c, b),
		};
		const ba = ratios[mode].b_over_a_req_per_s;
		floors[mode] = {
			floor: FLOORS[mode],
			b_over_a: ba,
			met: ba === null ? null : ba >= FLOORS[mode],
		};
	}

	// --- table ---
	const lines: string[] = [];
	const row = (cells: string[], widths: number[]) =>
		cells
			.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
			.join("  ");
	const widths = [10, 12, 10, 8, 8, 10, 8];
	lines.push(
		row(
			["mode", "path", "req/s", "p50 ms", "p99 ms", "conn/req", "errors"],
			widths,
		),
	);
	for (const c of cases) {
		lines.push(
			row(
				[
					MODE_NAMES[c.mode],
					PATH_NAMES[c.path],
					c.req_per_s.toLocaleString("en-US"),
					c.p50_ms.toFixed(3),
					c.p99_ms.toFixed(3),
					c.conns_per_request.toFixed(3),
					String(c.errors),
				],
				widths,
			),
		);
	}
	lines.push("");
	const fmt = (x: number | null) => (x === null ? "n/a" : x.toFixed(3));
	for (const mode of MODES) {
		const r = ratios[mode];
		const f = floors[mode];
		const verdict = f.met === null ? "not checked" : f.met ? "met" : "NOT MET";
		lines.push(
			`${MODE_NAMES[mode].padEnd(10)}  req/s b/a ${fmt(r.b_over_a_req_per_s)} (floor ${f.floor}: ${verdict})` +
				`   c/b ${fmt(r.c_over_b_req_per_s)}   p50 b/a ${fmt(r.b_over_a_p50)}  c/b ${fmt(r.c_over_b_p50)}`,
		);
	}
	console.log(lines.join("\n"));

	const result = {
		meta,
		cases: cases.map((c) => ({
			...c,
			conns_per_request: round(c.conns_per_request, 4),
			backend_conns_per_request: round(c.backend_conns_per_request, 4),
		})),
		ratios,
		floors,
	};
	const json = JSON.stringify(result, null, 2);
	console.log(`\nJSON:\n${json}`);
	if (values.json) writeFileSync(values.json, `${json}\n`);

	const missed = Object.values(floors).some((f) => f.met === false);
	return values.strict && missed ? 3 : 0;
}

process.exitCode = main();
