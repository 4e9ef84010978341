/** Errors the operator sees; `code` maps onto org.openeuler.Kmesh1.Error.<code> on D-Bus. */
export type KmeshErrorCode =
  | 'InvalidArgument'
  | 'InvalidConfig'
  | 'NotFound'
  | 'AlreadyExists'
  | 'CapacityExceeded'
  | 'KernelUnsupported'
  | 'Failed';

export class KmeshError extends Error {
  constructor(
    readonly code: KmeshErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'KmeshError';
  }
}
