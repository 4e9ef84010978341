/**
 * Limits of the in-kernel HTTP route table. The kernel's map layouts and its bounded parse loops are sized by them;
 * configuration beyond them is refused at apply (TOML error, xDS NACK) rather than half-programmed.
 * Provisional values from the config side; the kernel side owns them and may change them here.
 */
export const L7_LIMITS = {
  /** Virtual hosts on one listener. */
  vhostsPerListener: 8,
  /** Domains of one virtual host. */
  domainsPerVhost: 8,
  /** Ordered routes of one virtual host. */
  routesPerVhost: 16,
  /** Header matchers of one route (`method` is not one of them). */
  headersPerRoute: 4,
  /** Bytes of any string matched in the kernel: domain, path, method, header name and value. */
  matchStringBytes: 64,
  /** Bytes of the first request's head (request line + headers) the kernel reads; headers beyond are not seen. */
  headerBlockBytes: 4096,
} as const;
