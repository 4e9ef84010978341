import { errnoName } from './errno.js';

/** A failed libbpf/kernel call, with the errno name the operator can look up. */
export class BpfError extends Error {
  constructor(
    readonly operation: string,
    readonly errno: number,
  ) {
    super(`${operation}: ${errnoName(errno)}`);
    this.name = 'BpfError';
  }
}

/** libbpf 1.x returns -errno; turn that into an exception. */
export function check(operation: string, rc: number): number {
  if (rc < 0) throw new BpfError(operation, -rc);
  return rc;
}
