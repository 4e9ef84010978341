/** The package version, read once from package.json next to proto/ (sent as the Node user agent version). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { protoDir } from './protos.js';

let version: string | undefined;

export function packageVersion(): string {
  if (version === undefined) {
    try {
      version = String(JSON.parse(readFileSync(join(protoDir(), '..', 'package.json'), 'utf8')).version ?? '0.0.0');
    } catch {
      version = '0.0.0';
    }
  }
  return version;
}
