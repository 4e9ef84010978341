// Keeps BPF run-time statistics (bpf_prog_info.run_time_ns / run_cnt) switched on for as long as this process
// lives, through the project's BPF_ENABLE_STATS wrapper: bench/l4/run.sh starts it around one extra run of path b
// to report what Kmesh's connect4 program costs per connect(), then stops it by pid. The statistics cost a few ns
// per program run, so they are off during the measured runs.
import { enableBpfStats } from '../../src/probe/prog-stats.js';

enableBpfStats(); // the fd stays open until the process exits
process.stdout.write('bpf stats on\n');
setInterval(() => {}, 60_000);
process.on('SIGTERM', () => process.exit(0));
