// Copy the production dependencies of the local node_modules into DEST/node_modules, using package-lock.json
// to tell production from dev packages. `npm prune --omit=dev` is not used because it also *installs* missing
// optional packages (dbus-next's native usocket → node-gyp and friends) from the cache.
// Usage: node copy-prod-modules.mjs REPO_ROOT DEST
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [root, dest] = process.argv.slice(2);
if (!root || !dest) {
  console.error('usage: copy-prod-modules.mjs REPO_ROOT DEST');
  process.exit(2);
}
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
let copied = 0;
for (const [path, meta] of Object.entries(lock.packages ?? {})) {
  if (!path.startsWith('node_modules/') || meta.dev || meta.devOptional) continue;
  const src = join(root, path);
  // Optional packages for other platforms (or skipped native builds) are simply not on disk.
  if (!existsSync(src)) continue;
  // Nested packages are copied with their parent; copying again is harmless but wasteful.
  cpSync(src, join(dest, path), { recursive: true, dereference: false, force: true });
  copied++;
}
console.log(`copied ${copied} production packages`);
