/**
 * A full garbage collection on demand, without starting node with `--expose-gc`: the flag is set just long
 * enough to take `gc` from a fresh context, then cleared, so no other context (and no global) gets it.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

export function fullGc(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
    setFlagsFromString('--no-expose-gc');
  }
  gc();
}
