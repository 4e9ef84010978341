/** Where the installed package is, and its version: read once, here only. */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: two levels above dist/src/contracts (also in an installed package). */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** package.json's version; the D-Bus Version property, `--version`, the xDS user agent. */
export const VERSION: string = String(
  JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version ?? '0.0.0',
);
