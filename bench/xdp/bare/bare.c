//go:build ignore

/* xdp_bare is the floor pinhole's XDP program is measured against
 * (bench/xdp/run.sh): the least an XDP program can do for the same two
 * jobs. A UDP datagram to port 5060 carrying exactly a CRLF CRLF keepalive
 * is answered in place with CRLF (MACs, addresses and ports swapped,
 * XDP_TX); any other UDP datagram to port 5060 is dropped (XDP_DROP), as
 * pinhole swallows an answer to its NAT ping; everything else passes. No
 * maps, no counters, no parsing beyond fixed offsets: IPv4 without options
 * or VLAN tags only, which is what the bench sends. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define SIP_PORT 5060
/* the answer: Ethernet, IPv4 without options, UDP, CRLF */
#define REPLY_LEN (ETH_HLEN + sizeof(struct iphdr) + sizeof(struct udphdr) + 2)

SEC("xdp")
int xdp_bare(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *pl = (void *)(udp + 1);

	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || udp->dest != bpf_htons(SIP_PORT))
		return XDP_PASS;
	/* Fragments other than the first have no UDP header where it is read. */
	if (ip->frag_off & bpf_htons(0x3fff))
		return XDP_PASS;
	/* The UDP length, not the frame's, says what the payload is: a NIC may
	 * pad a short frame to 60 bytes. */
	if (udp->len != bpf_htons(sizeof(*udp) + 4) || (void *)(pl + 4) > end ||
	    pl[0] != '\r' || pl[1] != '\n' || pl[2] != '\r' || pl[3] != '\n')
		return XDP_DROP;

	if (bpf_xdp_adjust_tail(ctx, (int)REPLY_LEN - (int)(end - data)))
		return XDP_DROP;
	/* Adjusting the tail invalidates every packet pointer. */
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	udp = (void *)(ip + 1);
	if ((void *)((__u8 *)(udp + 1) + 2) > end)
		return XDP_DROP;

	__u8 mac[ETH_ALEN];
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);

	__be32 a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*udp) + 2);
	ip->ttl = 64;
	ip->check = 0;
	__u32 s = 0;
	__u16 *w = (void *)ip;
	for (int i = 0; i < (int)sizeof(*ip) / 2; i++)
		s += w[i];
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	ip->check = (__u16)~s;

	__be16 p = udp->source;
	udp->source = udp->dest;
	udp->dest = p;
	udp->len = bpf_htons(sizeof(*udp) + 2);
	/* The payload keeps the request's first CRLF, which is the answer.
	 * No UDP checksum: optional over IPv4 (RFC 768), and computing one is
	 * work the floor should not carry. */
	udp->check = 0;
	return XDP_TX;
}
