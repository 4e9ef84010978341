/** What systemd passes back to the next daemon (LISTEN_FDS / LISTEN_FDNAMES), and when the store is used. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ANCHOR_FDNAME, CONN_FDNAME, fdStoreAvailable, takeInheritedFds } from '../../src/l7/fd-store.js';

describe('L7 fd store', () => {
  test('inherited fds from 3 on, named; taken once; another pid’s are not ours', () => {
    const env: NodeJS.ProcessEnv = {
      LISTEN_PID: String(process.pid),
      LISTEN_FDS: '3',
      LISTEN_FDNAMES: `${ANCHOR_FDNAME}:${CONN_FDNAME}:${CONN_FDNAME}`,
    };
    assert.deepEqual(takeInheritedFds(env), [
      { fd: 3, name: ANCHOR_FDNAME },
      { fd: 4, name: CONN_FDNAME },
      { fd: 5, name: CONN_FDNAME },
    ]);
    assert.deepEqual(env, {}, 'the variables are removed (children must not take them)');
    assert.deepEqual(takeInheritedFds(env), []);
    assert.deepEqual(takeInheritedFds({ LISTEN_PID: String(process.pid + 1), LISTEN_FDS: '2' }), []);
    assert.deepEqual(takeInheritedFds({ LISTEN_PID: String(process.pid), LISTEN_FDS: 'x' }), []);
  });

  test('used under systemd unless it says the store has no room', () => {
    assert.equal(fdStoreAvailable({}), false);
    assert.equal(fdStoreAvailable({ NOTIFY_SOCKET: '/run/systemd/notify' }), true);
    assert.equal(fdStoreAvailable({ NOTIFY_SOCKET: '/run/systemd/notify', FDSTORE: '65536' }), true);
    assert.equal(fdStoreAvailable({ NOTIFY_SOCKET: '/run/systemd/notify', FDSTORE: '0' }), false);
  });
});
