/**
 * The data path as one thing: every object of the manifest opened, planned against the
 * kernel's features (detected once), loaded with its maps pinned in one directory, and
 * handed out by family and role. The daemon, the probe and the metrics read it through
 * the small views below; none of them opens an object itself.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FeatureStatus } from '../contracts/control.js';
import { KmeshError } from '../contracts/errors.js';
import type { BpfMap } from '../runtime/bpf-map.js';
import { BpfObject, type BpfProgram, warnStalePins } from '../runtime/bpf-object.js';
import { detectFeatures, planObject } from '../runtime/features.js';
import { MANIFEST, type Manifest } from './manifest.js';

interface DatapathLogger {
  warn(obj: object, msg: string): void;
}

export interface DatapathOptions<M extends Manifest> {
  /** Directory of the compiled objects (build/bpf). */
  objectDir: string;
  /** Maps are pinned here by name; a map another object already pinned is shared. */
  pinMapsDir: string;
  logger: DatapathLogger;
  /** Detected features (default: detected now, once). */
  features?: Record<string, FeatureStatus>;
  manifest?: M;
}

/** One family's outcome, for status and logs. */
export interface FamilyState {
  family: string;
  object: string;
  need: 'required' | 'optional';
  enabled: boolean;
  /** Why it is off. */
  reason?: string;
  /** Programs left out because the kernel lacks what they need, name → why. */
  disabledPrograms: Record<string, string>;
}

export type FamilyMaps<M extends Manifest, F extends keyof M> = { readonly [R in keyof M[F]['maps']]: BpfMap };

interface Loaded {
  obj: BpfObject;
  maps: Record<string, BpfMap>;
}

export class Datapath<M extends Manifest = typeof MANIFEST> {
  private constructor(
    private readonly loaded: Map<keyof M, Loaded>,
    private readonly states: FamilyState[],
    /** What the kernel has, as detected at start-up (for status). */
    readonly features: Readonly<Record<string, FeatureStatus>>,
  ) {}

  /**
   * Opens and loads every object of the manifest. Throws KmeshError('KernelUnsupported')
   * when a required family cannot run (nothing of it is left loaded); an optional one
   * is switched off with a warning naming why.
   */
  static open<M extends Manifest = typeof MANIFEST>(options: DatapathOptions<M>): Datapath<M> {
    const manifest = (options.manifest ?? MANIFEST) as M;
    const features = options.features ?? detectFeatures();
    const loaded = new Map<keyof M, Loaded>();
    const states: FamilyState[] = [];
    try {
      for (const [family, entry] of Object.entries(manifest)) {
        const state: FamilyState = {
          family,
          object: entry.object,
          need: entry.need,
          enabled: false,
          disabledPrograms: {},
        };
        states.push(state);
        try {
          const obj = loadFamily(entry.object, options, features, state);
          loaded.set(family, { obj, maps: mapsByRole(obj, entry.maps) });
          state.enabled = true;
        } catch (err) {
          const reason = (err as Error).message;
          if (entry.need === 'required') {
            throw new KmeshError('KernelUnsupported', `this kernel cannot run the Kmesh data path: ${reason}`);
          }
          state.reason = reason;
          options.logger.warn({ family, why: reason }, `feature off: ${entry.what}`);
        }
      }
    } catch (err) {
      for (const { obj } of loaded.values()) obj.close();
      throw err;
    }
    return new Datapath<M>(loaded, states, features);
  }

  enabled(family: keyof M): boolean {
    return this.loaded.has(family);
  }

  /** A family's maps by role; throws when the family is off (ask enabled() first for optional ones). */
  maps<F extends keyof M & string>(family: F): FamilyMaps<M, F> {
    const l = this.loaded.get(family);
    if (!l) throw new Error(`data path family ${family} is off`);
    return l.maps as FamilyMaps<M, F>;
  }

  /** A family's loaded programs (none when it is off). */
  programsOf(family: keyof M): BpfProgram[] {
    return this.loaded.get(family)?.obj.allPrograms() ?? [];
  }

  /** Every loaded program: what the daemon attaches to each registered cgroup. */
  programs(): BpfProgram[] {
    return [...this.loaded.values()].flatMap((l) => l.obj.allPrograms());
  }

  families(): readonly FamilyState[] {
    return this.states;
  }

  /** Program and family switches as status shows them: on, or off with the reason. */
  status(): Record<string, FeatureStatus> {
    const out: Record<string, FeatureStatus> = {};
    for (const s of this.states) {
      if (!s.enabled) out[s.family] = { enabled: false, ...(s.reason ? { reason: s.reason } : {}) };
      for (const [program, reason] of Object.entries(s.disabledPrograms)) out[program] = { enabled: false, reason };
    }
    for (const prog of this.programs()) out[prog.name] = { enabled: true };
    return out;
  }

  /** Closes the fds; pinned maps and links stay in the kernel. */
  close(): void {
    for (const { obj } of this.loaded.values()) obj.close();
    this.loaded.clear();
  }
}

function loadFamily(
  file: string,
  options: DatapathOptions<Manifest>,
  features: Record<string, FeatureStatus>,
  state: FamilyState,
): BpfObject {
  const path = join(options.objectDir, file);
  if (!existsSync(path)) throw new Error(`${path} not found (build with make -C bpf)`);
  const obj = BpfObject.open(path, { pinMapsDir: options.pinMapsDir, onStalePin: warnStalePins(options.logger) });
  try {
    const plan = planObject(obj, features);
    if (plan.unusable.length > 0) throw new Error(plan.unusable.join('; '));
    for (const [program, reason] of plan.disabled) {
      state.disabledPrograms[program] = reason;
      options.logger.warn({ program, reason }, 'feature off: the kernel lacks what this program needs');
    }
    obj.skipPrograms(plan.disabled.keys());
    obj.load();
    return obj;
  } catch (err) {
    obj.close();
    throw err;
  }
}

function mapsByRole(obj: BpfObject, roles: Readonly<Record<string, string>>): Record<string, BpfMap> {
  return Object.fromEntries(Object.entries(roles).map(([role, name]) => [role, obj.map(name)]));
}
