/** The connect timeout as a SYN retransmission schedule the kernel runs. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { synSchedule, synUnits } from '../../src/controller/syn-schedule.js';

describe('connect timeout → SYN schedule', () => {
  test('units of the initial timeout until ETIMEDOUT: exponential, and linear first from 6.5', () => {
    assert.equal(synUnits(6, 0), 127); // the kernel default: 1+2+4+…+64 s
    assert.equal(synUnits(1, 0), 3);
    assert.equal(synUnits(2, 0), 7);
    // tcp_syn_linear_timeouts = 4: four more tries at the initial timeout, then doubling
    assert.equal(synUnits(1, 4), 7);
  });

  test('a short timeout: one retransmission, spaced to add up to it (HZ 250)', () => {
    assert.deepEqual(synSchedule(300, { hz: 250, linearTimeouts: 0 }), { rtoJiffies: 25, retries: 1 });
    assert.deepEqual(synSchedule(700, { hz: 1000, linearTimeouts: 4 }), { rtoJiffies: 100, retries: 1 });
  });

  test('a long timeout keeps retransmissions no further apart than the default 1 s', () => {
    const s = synSchedule(10_000, { hz: 1000, linearTimeouts: 0 });
    assert.equal(s.retries, 3); // 15 units of 667 ms
    assert.ok(s.rtoJiffies <= 1000);
    assert.ok(Math.abs((s.rtoJiffies * 15) / 1000 - 10) < 0.01);
  });

  test('never below one jiffy', () => {
    assert.equal(synSchedule(1, { hz: 100, linearTimeouts: 0 }).rtoJiffies, 1);
  });
});
