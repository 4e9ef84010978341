/** A whole model as a reconciler delta (for unit tests of the reconciler and what it keeps). */
import { desiredState } from '../../src/controller/desired-state.js';
import type { ConfigDelta } from '../../src/controller/reconciler.js';
import type { MeshModel } from '../../src/model/types.js';

/** The whole of `model` as a delta against whatever is live (what is live and not in it goes). */
export function wholeDelta(
  model: MeshModel,
  live: { clusters: Iterable<number>; listeners: Iterable<string> },
): ConfigDelta {
  const d = desiredState(model);
  const delta: ConfigDelta = { clusters: new Map(d.clusters), listeners: new Map(d.listeners) };
  for (const id of live.clusters) if (!delta.clusters.has(id)) delta.clusters.set(id, null);
  for (const hex of live.listeners) if (!delta.listeners.has(hex)) delta.listeners.set(hex, null);
  return delta;
}
