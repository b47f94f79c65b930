//go:build ignore

/* xdp_sip answers, swallows or drops the dull UDP traffic on SIP ports before
 * it reaches a socket; see docs/xdp.md. Everything it does not recognise as
 * its own it passes untouched. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "pinhole.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define NSEC 1000000000ULL

/* IPv4 fragment bits of frag_off (RFC 791), not exported by uapi headers */
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* flags handed from the parser to sip() */
#define F_V6 1      /* IPv6, else IPv4 */
#define F_OPTIONS 2 /* IPv4 options or IPv6 extension headers present */

/* Offsets are bounded so that the verifier can prove packet accesses made
 * from variable offsets: two VLAN tags, 60 bytes of IPv4 header or 40 bytes
 * of IPv6 header plus MAX_EXT extension headers of at most 2048 bytes. */
#define MAX_L3OFF (14 + 2 * 4)
#define MAX_EXT 3
#define MAX_L4OFF (MAX_L3OFF + 40 + MAX_EXT * 2048)

/* Header scan: the first SCAN_LIMIT bytes of a SIP message are searched for
 * User-Agent (requests) or Call-ID (responses), eight bytes per iteration. */
#define SCAN_LIMIT 1024

/* ...but User-Agent only in the first UA_SCAN_LIMIT bytes. Every request
 * pays for the scan (about 2 ns per 8 bytes), and the scanners it is for
 * send short requests with User-Agent early: SIPVicious' OPTIONS and
 * REGISTER (friendly-scanner) have it near byte 190. A real phone's
 * REGISTER has it near the end, 300 bytes and more in: stopping here keeps
 * that case under 100 ns per run. */
#define UA_SCAN_LIMIT 256

/* STUN magic cookie, RFC 5389 §6 */
#define STUN_COOKIE 0x2112A442

enum reply_kind {
	REPLY_CRLF,
	REPLY_STUN,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VERDICT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1000000);
	__type(key, struct endpoint);
	__type(value, __u64); /* CLOCK_MONOTONIC_COARSE ns of the last keepalive */
} alive SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1000000);
	__type(key, struct endpoint);
	__type(value, struct natping);
} natpings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1000000);
	__type(key, struct addr);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ratecfg);
} ratelimit SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct lpm4);
	__type(value, __u64); /* expiry, CLOCK_MONOTONIC seconds; 0 = never */
} block4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6);
	__type(value, __u64);
} block6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct signatures);
} signatures SEC(".maps");

/* Keep enum verdict in BTF so bpf2go emits it for the Go side. */
const enum verdict unused_verdict __attribute__((unused));

struct vlanhdr {
	__be16 tci;
	__be16 proto;
};

static __always_inline int count(__u32 v, int action)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &v);

	if (c)
		*c += 1; /* per-CPU slot: no atomic needed */
	return action;
}

/* Unaligned 8-byte packet load. Direct packet access may be unaligned on
 * architectures with efficient unaligned access (x86-64, arm64); the
 * verifier refuses it elsewhere, and the program then fails to load. */
static __always_inline __u64 load64(const void *p)
{
	return *(const __u64 *)p;
}

/* Mask with the top bit of every byte of x that is zero, and only those
 * (the exact form: no false positives above a zero byte). */
static __always_inline __u64 zero_bytes(__u64 x)
{
	__u64 y = (x & 0x7f7f7f7f7f7f7f7fULL) + 0x7f7f7f7f7f7f7f7fULL;

	return ~(y | x | 0x7f7f7f7f7f7f7f7fULL);
}

/* Index of the highest byte flagged in t (as from zero_bytes, t != 0).
 * Branch-free: BPF has no clz, and a branch per byte would multiply the
 * verifier's states on every scan iteration. Smear the flags down to every
 * lower byte, then count them with one multiply. */
static __always_inline __u64 last_byte(__u64 t)
{
	__u64 s = t >> 7;

	s |= s >> 8;
	s |= s >> 16;
	s |= s >> 32;
	return ((s * 0x0101010101010101ULL) >> 56) - 1;
}

static __always_inline __u64 lower8(__u64 w)
{
	/* SWAR ASCII tolower: add 0x20 to bytes in 'A'..'Z' only. */
	__u64 h = w & 0x7f7f7f7f7f7f7f7fULL;
	__u64 ge_a = h + 0x3f3f3f3f3f3f3f3fULL; /* top bit set if byte >= 'A' */
	__u64 gt_z = h + 0x2525252525252525ULL; /* top bit set if byte > 'Z' */
	__u64 up = (ge_a ^ gt_z) & ~w & 0x8080808080808080ULL;

	return w | (up >> 2);
}

#define LE8(a, b, c, d, e, f, g, h)                                          \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | \
	 (__u64)(e) << 32 | (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)

/* match_signature reports whether a User-Agent value, given as its first 32
 * bytes, starts with one of the configured signatures. A global function:
 * the verifier checks it once, not once per scan iteration. */
__noinline int match_signature(__u64 w0, __u64 w1, __u64 w2, __u64 w3)
{
	__u32 zero = 0;
	struct signatures *s = bpf_map_lookup_elem(&signatures, &zero);

	if (!s)
		return 0;
	w0 = lower8(w0);
	w1 = lower8(w1);
	w2 = lower8(w2);
	w3 = lower8(w3);
	for (int i = 0; i < MAX_SIGNATURES; i++) {
		struct signature *g = &s->sig[i];

		if (!g->mask[0])
			continue;
		if (((w0 ^ g->word[0]) & g->mask[0]) == 0 &&
		    ((w1 ^ g->word[1]) & g->mask[1]) == 0 &&
		    ((w2 ^ g->word[2]) & g->mask[2]) == 0 &&
		    ((w3 ^ g->word[3]) & g->mask[3]) == 0)
			return 1;
	}
	return 0;
}

/* Load up to 8 bytes at q, zero-filling past the end of the frame. */
static __always_inline __u64 load_upto8(const __u8 *q, const void *end)
{
	__u64 w = 0;

	if ((const void *)(q + 8) <= end)
		return load64(q);
	for (int j = 0; j < 7; j++) {
		if ((const void *)(q + j + 1) > end)
			break;
		w |= (__u64)q[j] << (8 * j);
	}
	return w;
}

/* Skip SWS ":" SWS (RFC 3261 §25.1 HCOLON, without line folding) starting at
 * offset off; returns the offset after it or 0. */
static __always_inline __u32 skip_hcolon(const __u8 *data, const void *end, __u32 off)
{
	int colon = 0;

	for (int i = 0; i < 6; i++) {
		const __u8 *c = data + off;

		if ((const void *)(c + 1) > end)
			return 0;
		if (*c == ':' && !colon)
			colon = 1;
		else if (*c != ' ' && *c != '\t')
			break;
		off++;
	}
	return colon ? off : 0;
}

/* ua_scanner checks the User-Agent value after the header name that ends at
 * frame offset off. */
__noinline int ua_scanner(struct xdp_md *ctx, __u32 off)
{
	const __u8 *data = (void *)(long)ctx->data;
	const void *end = (void *)(long)ctx->data_end;
	const __u8 *v;

	if (off > MAX_L4OFF + SCAN_LIMIT + 64)
		return 0;
	v = data + off;
	if ((const void *)(v + 2) > end || (v[0] | 0x20) != 'n' || (v[1] | 0x20) != 't')
		return 0;
	off = skip_hcolon(data, end, off + 2);
	if (!off || off > MAX_L4OFF + SCAN_LIMIT + 64)
		return 0;
	v = data + off;
	return match_signature(load_upto8(v, end), load_upto8(v + 8, end),
			       load_upto8(v + 16, end), load_upto8(v + 24, end));
}

static __always_inline __u64 hexval(__u8 c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 16;
}

/* callid_token parses "ph-<16 hex digits>" in the Call-ID value after the
 * header name that ends at frame offset off; 0 means none. The value must
 * end there, with CRLF, and the next line must not start with SP or HTAB:
 * such a line continues the value (RFC 3261 §7.3.1), and the slow path
 * would read another Call-ID than the token. pinhole's pings carry the
 * token alone, so anything longer is not an answer to one. */
__noinline __u64 callid_token(struct xdp_md *ctx, __u32 off)
{
	const __u8 *data = (void *)(long)ctx->data;
	const void *end = (void *)(long)ctx->data_end;
	const __u8 *v;
	__u64 tok = 0, hex[2];

	if (off > MAX_L4OFF + SCAN_LIMIT + 64)
		return 0;
	off = skip_hcolon(data, end, off);
	if (!off || off > MAX_L4OFF + SCAN_LIMIT + 64)
		return 0;
	v = data + off;
	if ((const void *)(v + 22) > end)
		return 0;
	if (v[0] != 'p' || v[1] != 'h' || v[2] != '-')
		return 0;
	if (v[19] != '\r' || v[20] != '\n' || v[21] == ' ' || v[21] == '\t')
		return 0;
	/* Two word loads, then parse from registers: a loop over packet
	 * bytes lets clang rematerialise the pointer out of the verifier's
	 * sight of the bounds check. */
	hex[0] = load64(v + 3);
	hex[1] = load64(v + 11);
	for (int i = 0; i < 16; i++) {
		__u64 d = hexval(hex[i / 8] >> (8 * (i % 8)) & 0xff);

		if (d > 15)
			return 0;
		tok = tok << 4 | d;
	}
	return tok;
}

enum scan_for {
	SCAN_USER_AGENT,
	SCAN_CALL_ID,
};

/* scan walks the header lines of the SIP message at frame offset poff and
 * hands the first User-Agent (or Call-ID) header to ua_scanner (or
 * callid_token). It reads aligned 8-byte words at fixed offsets so that the
 * verifier sees the same state on every path into the next iteration, and
 * only looks at the line after the last LF of a word: a line that starts and
 * ends within one word is shorter than any header it looks for. A global
 * function, verified once. */
__noinline __u64 scan(struct xdp_md *ctx, __u32 poff, __u32 what)
{
	const __u8 *data = (void *)(long)ctx->data;
	const void *end = (void *)(long)ctx->data_end;
	const __u32 limit = what == SCAN_USER_AGENT ? UA_SCAN_LIMIT : SCAN_LIMIT;
	const __u8 *start;
	__u64 prev = 0;

	if (poff > MAX_L4OFF + 8)
		return 0;
	start = data + poff;
	for (__u32 off = 0; off < limit; off += 8) {
		const __u8 *p = start + off, *l;
		__u64 w, x, nl, blank;
		__u32 lo;

		if ((const void *)(p + 8) > end)
			break;
		w = load64(p);
		/* Most words hold no LF: the cheap has-zero form (exact for
		 * "none") is all the work they cost. */
		x = w ^ 0x0a0a0a0a0a0a0a0aULL;
		if (!((x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL)) {
			prev = w;
			continue;
		}
		/* "\n\r\n" ends the header section (RFC 3261 §7); the flags of
		 * the previous word's last bytes carry across the edge. */
		nl = zero_bytes(x);
		blank = nl & (zero_bytes(w ^ 0x0d0d0d0d0d0d0d0dULL) << 8 |
			      zero_bytes(prev ^ 0x0d0d0d0d0d0d0d0dULL) >> 56) &
			(nl << 16 | zero_bytes(prev ^ 0x0a0a0a0a0a0a0a0aULL) >> 48);
		prev = w;
		if (blank)
			break;
		lo = off + last_byte(nl) + 1;
		l = start + lo;
		if ((const void *)(l + 8) > end)
			break;
		if (l[0] == '\r' || l[0] == '\n')
			break; /* the empty line starts the next word */
		if (what == SCAN_USER_AGENT) {
			if ((l[0] | 0x20) == 'u' &&
			    lower8(load64(l)) == LE8('u', 's', 'e', 'r', '-', 'a', 'g', 'e'))
				return ua_scanner(ctx, poff + lo + 8);
		} else {
			/* Call-ID, or its compact form "i" (RFC 3261 §7.3.3) */
			if ((lower8(load64(l)) & 0x00ffffffffffffffULL) ==
			    LE8('c', 'a', 'l', 'l', '-', 'i', 'd', 0))
				return callid_token(ctx, poff + lo + 7);
			if ((l[0] | 0x20) == 'i' && (l[1] == ':' || l[1] == ' ' || l[1] == '\t'))
				return callid_token(ctx, poff + lo + 1);
		}
	}
	return 0;
}

static __always_inline void mark_alive(struct endpoint *src, __u64 now)
{
	__u64 *t = bpf_map_lookup_elem(&alive, src);

	if (t)
		*t = now;
	else
		bpf_map_update_elem(&alive, src, &now, BPF_ANY);
}

static __always_inline int blocked(struct endpoint *src, __u32 flags, __u64 now)
{
	__u64 *until;

	if (flags & F_V6) {
		struct lpm6 k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, src->addr.b, 16);
		until = bpf_map_lookup_elem(&block6, &k);
	} else {
		struct lpm4 k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, &src->addr.b[12], 4);
		until = bpf_map_lookup_elem(&block4, &k);
	}
	if (!until)
		return 0;
	return *until == 0 || now / NSEC < *until;
}

/* Token bucket per source address, like OpenSIPS pike. Buckets are shared by
 * all CPUs and updated without atomics: a race can admit a request too many,
 * never drop one too many. */
static __always_inline int over_rate(struct endpoint *src, __u64 now)
{
	__u32 zero = 0;
	struct ratecfg *c = bpf_map_lookup_elem(&ratelimit, &zero);
	struct bucket *b;
	__u64 t, elapsed;

	if (!c || !c->rate)
		return 0;
	b = bpf_map_lookup_elem(&buckets, &src->addr);
	if (!b) {
		struct bucket nb = { .last_ns = now };

		if (c->burst_nt < NSEC)
			return 1; /* cannot happen: burst >= 1 request */
		nb.tokens = c->burst_nt - NSEC;
		bpf_map_update_elem(&buckets, &src->addr, &nb, BPF_ANY);
		return 0;
	}
	t = b->tokens;
	elapsed = now > b->last_ns ? now - b->last_ns : 0;
	if (elapsed >= c->fill_ns)
		t = c->burst_nt;
	else
		t += elapsed * c->rate; /* < burst_nt + fill_ns * rate: no overflow */
	if (t > c->burst_nt)
		t = c->burst_nt;
	b->last_ns = now;
	if (t < NSEC) {
		b->tokens = t;
		b->dropped++;
		return 1;
	}
	b->tokens = t - NSEC;
	return 0;
}

static __always_inline __u16 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* build writes the answer into the frame in place. The frame has already
 * been cut to length; l3 has at least hl + 8 + rlen bytes. */
static __always_inline int build(struct xdp_md *ctx, __u32 l3off, const int v6, const int kind)
{
	const __u32 hl = v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	const __u32 rlen = kind == REPLY_CRLF ? 2 : (v6 ? 20 + 24 : 20 + 12);
	__u8 *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *l3 = data + l3off;
	struct udphdr *udp;
	__u8 *pl, mac[ETH_ALEN], addr[16];
	__u16 port, *w;
	__u32 s = 0;

	if ((void *)(data + ETH_HLEN) > end || (void *)(l3 + hl + 8 + rlen) > end)
		return count(VERDICT_MALFORMED, XDP_DROP); /* cannot happen: length was set */
	udp = (void *)(l3 + hl);
	pl = (void *)(udp + 1);

	__builtin_memcpy(mac, data, ETH_ALEN);
	__builtin_memcpy(data, data + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(data + ETH_ALEN, mac, ETH_ALEN);

	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->len = bpf_htons(8 + rlen);
	udp->check = 0;

	if (v6) {
		struct ipv6hdr *ip6 = (void *)l3;

		__builtin_memcpy(addr, &ip6->saddr, 16);
		__builtin_memcpy(&ip6->saddr, &ip6->daddr, 16);
		__builtin_memcpy(&ip6->daddr, addr, 16);
		ip6->payload_len = udp->len;
		ip6->hop_limit = 64;
		w = (__u16 *)&ip6->saddr;
		for (int i = 0; i < 16; i++)
			s += w[i];
	} else {
		struct iphdr *ip = (void *)l3;
		__u32 a = ip->saddr;

		__builtin_memcpy(addr, &a, 4);
		ip->saddr = ip->daddr;
		ip->daddr = a;
		ip->tot_len = bpf_htons(sizeof(*ip) + 8 + rlen);
		ip->ttl = 64;
		ip->check = 0;
		w = (__u16 *)ip;
		for (int i = 0; i < 10; i++)
			s += w[i];
		ip->check = fold(s);
		s = 0;
		w = (__u16 *)&ip->saddr;
		for (int i = 0; i < 4; i++)
			s += w[i];
	}

	if (kind == REPLY_STUN) {
		/* RFC 5389 §7.3.1 / §15.2: Binding Success Response carrying
		 * XOR-MAPPED-ADDRESS; cookie and transaction ID stay in place. */
		const __u16 alen = v6 ? 20 : 8;
		__u8 *at = pl + 20;

		pl[0] = 0x01;
		pl[1] = 0x01;
		pl[2] = 0;
		pl[3] = 4 + alen;
		at[0] = 0x00;
		at[1] = 0x20;
		at[2] = 0;
		at[3] = alen;
		at[4] = 0;
		at[5] = v6 ? 0x02 : 0x01;
		port ^= bpf_htons(STUN_COOKIE >> 16);
		__builtin_memcpy(at + 6, &port, 2);
		/* X-Address: address XOR cookie (IPv4) or cookie||transaction ID
		 * (IPv6); both sit at pl[4..19]. */
		for (int i = 0; i < (v6 ? 16 : 4); i++)
			at[8 + i] = addr[i] ^ pl[4 + i];
	} /* REPLY_CRLF: the request's first "\r\n" is the answer. */

	s += bpf_htons(IPPROTO_UDP) + udp->len;
	w = (__u16 *)udp;
	for (int i = 0; i < 4; i++)
		s += w[i];
	w = (__u16 *)pl;
	for (int i = 0; i < rlen / 2; i++)
		s += w[i];
	udp->check = fold(s) ?: 0xffff; /* RFC 768: 0 means "no checksum" */
	return count(kind == REPLY_CRLF ? VERDICT_CRLF_ANSWERED : VERDICT_STUN_ANSWERED, XDP_TX);
}

/* Largest growth of a STUN answer over its request: 20-byte Binding
 * Request without attributes, 44-byte IPv6 answer. */
#define STUN_GROW 24

/* grow_at_head makes room for a STUN answer when the frame has no tailroom
 * (veth, and generic XDP, hand over small skbs whose data ends where the
 * buffer does), taking it from the headroom every XDP frame has
 * (XDP_PACKET_HEADROOM): the first n bytes (headers up to the STUN
 * transaction ID) move STUN_GROW bytes towards the front, then the tail is
 * trimmed so that the frame is delta bytes longer than before. Returns 0 on
 * success, 1 if the frame is untouched, -1 if it was left broken (cannot
 * happen: the frame held n bytes). */
static __always_inline int grow_at_head(struct xdp_md *ctx, __u32 n, int delta)
{
	__u8 *data;
	void *end;

	if (delta > STUN_GROW || n > MAX_L3OFF + 40 + 8 + 20)
		return 1;
	if (bpf_xdp_adjust_head(ctx, -STUN_GROW))
		return 1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	for (int i = 0; i < MAX_L3OFF + 40 + 8 + 20; i++) {
		if (i >= n)
			break;
		if ((void *)(data + STUN_GROW + i + 1) > end)
			return -1;
		data[i] = data[STUN_GROW + i];
	}
	if (delta != STUN_GROW && bpf_xdp_adjust_tail(ctx, delta - STUN_GROW))
		return -1;
	return 0;
}

/* tx turns the frame into the answer to a keepalive and bounces it. Only
 * frames without IPv4 options or IPv6 extension headers get here: echoing a
 * source route or routing header back would send the answer astray. */
__noinline int tx(struct xdp_md *ctx, __u32 l3off, __u32 flags, __u32 kind)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 hl = flags & F_V6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	__u32 rlen = kind == REPLY_CRLF ? 2 : (flags & F_V6 ? 20 + 24 : 20 + 12);
	int delta;

	if (l3off > MAX_L3OFF)
		return count(VERDICT_KEEPALIVE_PASSED, XDP_PASS);
	/* Cut off Ethernet padding and STUN attributes, or grow for
	 * XOR-MAPPED-ADDRESS. A driver without tailroom makes this fail; the
	 * stack then answers. */
	delta = (int)(l3off + hl + 8 + rlen) - (int)(end - data);
	if (delta && bpf_xdp_adjust_tail(ctx, delta)) {
		if (delta < 0 || kind != REPLY_STUN)
			return count(VERDICT_KEEPALIVE_PASSED, XDP_PASS);
		switch (grow_at_head(ctx, l3off + hl + 8 + 20, delta)) {
		case 0:
			break;
		case 1:
			return count(VERDICT_KEEPALIVE_PASSED, XDP_PASS);
		default:
			return count(VERDICT_MALFORMED, XDP_DROP); /* cannot happen */
		}
	}
	if (flags & F_V6)
		return kind == REPLY_CRLF ? build(ctx, l3off, 1, REPLY_CRLF) : build(ctx, l3off, 1, REPLY_STUN);
	return kind == REPLY_CRLF ? build(ctx, l3off, 0, REPLY_CRLF) : build(ctx, l3off, 0, REPLY_STUN);
}

static __always_inline int is_filler(const __u8 *p, const void *end, __u32 plen)
{
	for (int i = 0; i < 4; i++) {
		__u8 c;

		if (i >= plen)
			break;
		if ((const void *)(p + i + 1) > end)
			return 0;
		c = p[i];
		if (c != '\r' && c != '\n' && c != 0 && c != ' ')
			return 0;
	}
	return 1;
}

/* is_request reports whether the payload starts with a SIP method (RFC 3261
 * §7.1 and the extensions in common use) followed by SP; methods are
 * case-sensitive. */
static __always_inline int is_request(const __u8 *p)
{
	__u64 w = load64(p);
	__u64 w4 = w & 0xffffffffULL, w5 = w & 0xffffffffffULL;
	__u64 w6 = w & 0xffffffffffffULL, w7 = w & 0xffffffffffffffULL;

	return w4 == LE8('A', 'C', 'K', ' ', 0, 0, 0, 0) ||
	       w4 == LE8('B', 'Y', 'E', ' ', 0, 0, 0, 0) ||
	       w5 == LE8('I', 'N', 'F', 'O', ' ', 0, 0, 0) ||
	       w6 == LE8('P', 'R', 'A', 'C', 'K', ' ', 0, 0) ||
	       w6 == LE8('R', 'E', 'F', 'E', 'R', ' ', 0, 0) ||
	       w7 == LE8('I', 'N', 'V', 'I', 'T', 'E', ' ', 0) ||
	       w7 == LE8('C', 'A', 'N', 'C', 'E', 'L', ' ', 0) ||
	       w7 == LE8('N', 'O', 'T', 'I', 'F', 'Y', ' ', 0) ||
	       w7 == LE8('U', 'P', 'D', 'A', 'T', 'E', ' ', 0) ||
	       w == LE8('M', 'E', 'S', 'S', 'A', 'G', 'E', ' ') ||
	       w == LE8('O', 'P', 'T', 'I', 'O', 'N', 'S', ' ') ||
	       w == LE8('P', 'U', 'B', 'L', 'I', 'S', 'H', ' ') ||
	       (w == LE8('R', 'E', 'G', 'I', 'S', 'T', 'E', 'R') && p[8] == ' ') ||
	       (w == LE8('S', 'U', 'B', 'S', 'C', 'R', 'I', 'B') && p[8] == 'E' && p[9] == ' ');
}

/* sip handles UDP to a SIP port: l3off and l4off locate the IP and UDP
 * headers, flags says which IP and whether it carried options. */
__noinline int sip(struct xdp_md *ctx, __u32 l3off, __u32 l4off, __u32 flags)
{
	__u8 *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct endpoint src = {};
	struct udphdr *udp;
	struct natping *np;
	__u32 ulen, plen, poff;
	__u64 now;
	__u8 *p;

	if (l3off > MAX_L3OFF || l4off > MAX_L4OFF || l4off < l3off)
		return count(VERDICT_PASS, XDP_PASS);
	udp = (void *)(data + l4off);
	if ((void *)(udp + 1) > end)
		return count(VERDICT_PASS, XDP_PASS);
	ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp) || (void *)((__u8 *)udp + ulen) > end)
		return count(VERDICT_MALFORMED, XDP_DROP);
	if (flags & F_V6) {
		struct ipv6hdr *ip6 = (void *)(data + l3off);

		if ((void *)(ip6 + 1) > end)
			return count(VERDICT_PASS, XDP_PASS);
		if (bpf_ntohs(ip6->payload_len) < l4off - l3off - sizeof(*ip6) + ulen)
			return count(VERDICT_MALFORMED, XDP_DROP);
		__builtin_memcpy(src.addr.b, &ip6->saddr, 16);
	} else {
		struct iphdr *ip = (void *)(data + l3off);

		if ((void *)(ip + 1) > end)
			return count(VERDICT_PASS, XDP_PASS);
		if (bpf_ntohs(ip->tot_len) < l4off - l3off + ulen)
			return count(VERDICT_MALFORMED, XDP_DROP);
		src.addr.b[10] = 0xff;
		src.addr.b[11] = 0xff;
		__builtin_memcpy(&src.addr.b[12], &ip->saddr, 4);
	}
	src.port = bpf_ntohs(udp->source);
	plen = ulen - sizeof(*udp);
	if (plen == 0)
		return count(VERDICT_EMPTY, XDP_DROP);

	/* The coarse clock (jiffies resolution, a few ms) is all liveness,
	 * expiry and a per-second rate need, and is cheaper than ktime_get_ns. */
	now = bpf_ktime_get_coarse_ns();
	if (blocked(&src, flags, now))
		return count(VERDICT_BLOCKLISTED, XDP_DROP);

	poff = l4off + sizeof(*udp);
	p = data + poff;

	if (plen <= 4) {
		/* RFC 5626 §3.5.1 double-CRLF ping; answered with one CRLF. */
		if (plen == 4 && (void *)(p + 4) <= end &&
		    p[0] == '\r' && p[1] == '\n' && p[2] == '\r' && p[3] == '\n') {
			mark_alive(&src, now);
			if (flags & F_OPTIONS)
				return count(VERDICT_KEEPALIVE_PASSED, XDP_PASS);
			return tx(ctx, l3off, flags, REPLY_CRLF);
		}
		if (is_filler(p, end, plen)) {
			mark_alive(&src, now);
			return count(VERDICT_FILLER_DROPPED, XDP_DROP);
		}
		return count(VERDICT_JUNK, XDP_DROP);
	}

	if (plen >= 20 && (void *)(p + 20) <= end && (p[0] & 0xc0) == 0 &&
	    p[4] == 0x21 && p[5] == 0x12 && p[6] == 0xa4 && p[7] == 0x42) {
		/* RFC 5389 §6: header length excludes the 20-byte header and
		 * is a multiple of 4. */
		__u32 mlen = (__u32)p[2] << 8 | p[3];

		if (mlen + 20 == plen && (mlen & 3) == 0) {
			if (p[0] != 0x00 || p[1] != 0x01)
				return count(VERDICT_KEEPALIVE_PASSED, XDP_PASS);
			mark_alive(&src, now);
			if (flags & F_OPTIONS)
				return count(VERDICT_KEEPALIVE_PASSED, XDP_PASS);
			return tx(ctx, l3off, flags, REPLY_STUN);
		}
	}

	if (plen < 10 || (void *)(p + 10) > end)
		return count(VERDICT_JUNK, XDP_DROP);

	if (load64(p) == LE8('S', 'I', 'P', '/', '2', '.', '0', ' ')) {
		np = bpf_map_lookup_elem(&natpings, &src);
		if (np && np->token) {
			__u64 tok = scan(ctx, poff, SCAN_CALL_ID);

			if (tok == np->token) {
				np->answered_ns = now;
				mark_alive(&src, now);
				return count(VERDICT_NATPING_SWALLOWED, XDP_DROP);
			}
		}
		return count(VERDICT_SIP_PASSED, XDP_PASS);
	}

	if (!is_request(p))
		return count(VERDICT_JUNK, XDP_DROP);
	if (over_rate(&src, now))
		return count(VERDICT_RATELIMITED, XDP_DROP);
	if (scan(ctx, poff, SCAN_USER_AGENT))
		return count(VERDICT_SCANNER, XDP_DROP);
	return count(VERDICT_SIP_PASSED, XDP_PASS);
}

SEC("xdp")
int xdp_sip(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 l3off = sizeof(*eth), l4off, flags = 0, port;
	struct udphdr *udp;
	__u16 proto;
	__u8 *on;

	if ((void *)(eth + 1) > end)
		return count(VERDICT_PASS, XDP_PASS);
	proto = eth->h_proto;
	/* 802.1ad outer tag and 802.1Q inner tag (QinQ), or a single tag. */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlanhdr *vh = data + l3off;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > end)
			return count(VERDICT_PASS, XDP_PASS);
		proto = vh->proto;
		l3off += sizeof(*vh);
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + l3off;

		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5 ||
		    ip->protocol != IPPROTO_UDP)
			return count(VERDICT_PASS, XDP_PASS);
		/* Only the first fragment carries the UDP header, and only the
		 * stack can reassemble. */
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return count(VERDICT_PASS, XDP_PASS);
		if (ip->ihl != 5)
			flags |= F_OPTIONS;
		l4off = l3off + ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + l3off;
		__u8 nh;

		if ((void *)(ip6 + 1) > end)
			return count(VERDICT_PASS, XDP_PASS);
		nh = ip6->nexthdr;
		l4off = l3off + sizeof(*ip6);
		/* RFC 8200 §4.1 order: hop-by-hop, destination options,
		 * routing, then the fragment header, which we leave to the
		 * stack like IPv4 fragments. */
		for (int i = 0; i < MAX_EXT; i++) {
			struct ipv6_opt_hdr *oh = data + l4off;

			if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING && nh != IPPROTO_DSTOPTS)
				break;
			if ((void *)(oh + 1) > end)
				return count(VERDICT_PASS, XDP_PASS);
			nh = oh->nexthdr;
			l4off += (oh->hdrlen + 1) * 8;
			flags |= F_OPTIONS;
		}
		if (nh != IPPROTO_UDP)
			return count(VERDICT_PASS, XDP_PASS);
		flags |= F_V6;
	} else {
		return count(VERDICT_PASS, XDP_PASS);
	}

	udp = data + l4off;
	if ((void *)(udp + 1) > end)
		return count(VERDICT_PASS, XDP_PASS);
	port = bpf_ntohs(udp->dest);
	on = bpf_map_lookup_elem(&ports, &port);
	if (!on || !*on)
		return count(VERDICT_PASS, XDP_PASS);
	return sip(ctx, l3off, l4off, flags);
}
