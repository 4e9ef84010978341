/** Helpers for tests of kmesh.toml parsing. */
import assert from 'node:assert/strict';
import { KmeshError } from '../../src/contracts/errors.js';
import { parseConfig } from '../../src/controller/config/load.js';

export const PATH = '/etc/kmesh/kmesh.toml';

/** Lines joined with \n: line N of the file is lines[N - 1]. */
export const toml = (...lines: string[]): string => `${lines.join('\n')}\n`;

/** The error lines parseConfig reports (it must throw KmeshError InvalidConfig). */
export function errorsOf(source: string): string[] {
  try {
    parseConfig(source, PATH);
  } catch (err) {
    assert.ok(err instanceof KmeshError, `expected KmeshError, got ${String(err)}`);
    assert.equal(err.code, 'InvalidConfig');
    return err.message.split('\n');
  }
  assert.fail('parseConfig accepted a bad config');
}
