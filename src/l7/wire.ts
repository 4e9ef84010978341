/** How the L7 data path joins the daemon: one call at start, optional (the kernel may lack what it needs). */
import type { Logger } from 'pino';
import { type L7Datapath as Datapath, L7Datapath } from './datapath.js';
import type { Anchor } from './encode.js';

export interface L7Settings {
  /** Default 127.0.0.1 with a port the kernel picks. */
  anchor?: Anchor;
  /** Ready upstream sockets per endpoint (default 16, at most 64). */
  poolDepth?: number;
}

export const DEFAULT_POOL_DEPTH = 16;

/** Loads, attaches and starts the L7 data path; undefined (logged) when the kernel refuses it. */
export async function startL7(
  settings: L7Settings,
  where: { pinMapsDir: string; bpfObjectDir: string },
  logger: Logger,
): Promise<Datapath | undefined> {
  let l7: Datapath | undefined;
  try {
    l7 = L7Datapath.load({
      ...where,
      anchor: settings.anchor ?? { address: '127.0.0.1', port: 0 },
      poolDepth: Math.min(64, settings.poolDepth ?? DEFAULT_POOL_DEPTH),
      logger,
    });
    await l7.start();
    return l7;
  } catch (err) {
    await l7?.stop().catch(() => {});
    logger.warn({ err: (err as Error).message }, 'feature off: L7 routing (http listeners keep connect-time routing)');
    return undefined;
  }
}
