/**
 * The string hash the L7 programs compare (bpf/kmesh_l7.h): H(s) = sum s[i] * B^(n-1-i)
 * mod 2^64 over the UTF-8 bytes, B = KMESH_L7_HASH_BASE.
 */
const BASE = 0x100000001b3n;
const MASK = (1n << 64n) - 1n;

export function l7Hash(text: string): bigint {
  let h = 0n;
  for (const byte of Buffer.from(text, 'utf8')) h = (h * BASE + BigInt(byte)) & MASK;
  return h;
}
