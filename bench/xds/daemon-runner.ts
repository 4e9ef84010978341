/**
 * Stand-in for `kmesh-daemon` with [xds] wired, used by the xDS bench until the real binary starts the xDS client
 * itself (bench/xds/run.ts prefers the real binary as soon as it does). Same flags: --config FILE --pin-dir DIR.
 * It is the real Daemon plus attachXds — exactly the two lines docs/xds.md asks the binary to add.
 */
import { parseArgs } from 'node:util';
import pino from 'pino';
import { parseXdsConfig } from '../../src/api/xds/config.js';
import { attachXds } from '../../src/api/xds/plugin.js';
import { loadConfigFile } from '../../src/controller/config/load.js';
import { Daemon } from '../../src/controller/daemon.js';

const { values } = parseArgs({ options: { config: { type: 'string' }, 'pin-dir': { type: 'string' } } });
if (!values.config) throw new Error('--config is required');
const config = loadConfigFile(values.config);
const logger = pino(
  { level: config.daemon.logLevel, base: { pid: process.pid } },
  pino.destination({ fd: 1, sync: true }),
);
const daemon = new Daemon(config, { logger, ...(values['pin-dir'] ? { pinDir: values['pin-dir'] } : {}) });
await daemon.start();
if (config.xds) attachXds(daemon, parseXdsConfig(config.xds.table, config.xds.where), logger);
logger.info({ pinDir: daemon.pinDir }, 'kmesh-daemon ready');
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  daemon.stop().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
