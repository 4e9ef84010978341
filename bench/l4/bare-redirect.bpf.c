// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bench/l4 path r: the bare redirect. One rule, no maps, no state: connect() to
 * VIP:VIP_PORT becomes connect() to 127.0.0.1:BACKEND_PORT. What any connect-time mesh
 * costs at the least (the hook runs, the address is rewritten), so Kmesh's path b is
 * measured against it in the same run. VIP (host-order u32), VIP_PORT and BACKEND_PORT
 * come from run.sh as -D flags.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("cgroup/connect4")
int bare_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_ip4 == bpf_htonl(VIP) && ctx->user_port == bpf_htons(VIP_PORT)) {
		ctx->user_ip4 = bpf_htonl(0x7f000001);
		ctx->user_port = bpf_htons(BACKEND_PORT);
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
