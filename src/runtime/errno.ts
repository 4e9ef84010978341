/** errno numbers the loader and map code branch on, and their names for messages. */
import { constants } from 'node:os';

export const EPERM = constants.errno.EPERM;
export const ENOENT = constants.errno.ENOENT;
export const EBADF = constants.errno.EBADF;
export const EEXIST = constants.errno.EEXIST;
export const EINVAL = constants.errno.EINVAL;
export const EOPNOTSUPP = constants.errno.EOPNOTSUPP;
/** The kernel's internal "operation not supported" (not in libc's errno.h), seen from BPF syscalls. */
export const ENOTSUPP = 524;

const NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, num]) => [num, name]));
NAMES.set(ENOTSUPP, 'ENOTSUPP');

export const errnoName = (errno: number): string => NAMES.get(errno) ?? `errno ${errno}`;
