/* Types shared by xdp_sip.c and, through bpf2go, the Go loader. */
#ifndef PINHOLE_H
#define PINHOLE_H

#include <linux/types.h>

/* Every packet the program sees ends in exactly one verdict; the loader
 * mirrors this enum as bpf.Verdict and a test checks the two agree. */
enum verdict {
	VERDICT_PASS = 0,          /* not SIP-port UDP (or unparsable before the port): untouched */
	VERDICT_SIP_PASSED,        /* SIP request or response handed to the stack */
	VERDICT_KEEPALIVE_PASSED,  /* keepalive or STUN that is better answered in userspace */
	VERDICT_CRLF_ANSWERED,     /* "\r\n\r\n" answered with "\r\n" (XDP_TX) */
	VERDICT_STUN_ANSWERED,     /* STUN Binding Request answered (XDP_TX) */
	VERDICT_FILLER_DROPPED,    /* CRLF / NUL / space filler of at most 4 bytes */
	VERDICT_NATPING_SWALLOWED, /* a device's reply to our own OPTIONS ping */
	VERDICT_RATELIMITED,       /* request over its source's token bucket */
	VERDICT_BLOCKLISTED,       /* source in the blocklist */
	VERDICT_SCANNER,           /* request whose User-Agent matches a signature */
	VERDICT_JUNK,              /* neither keepalive, STUN nor SIP */
	VERDICT_EMPTY,             /* zero-length UDP payload */
	VERDICT_MALFORMED,         /* IP/UDP lengths disagree with the frame */
	VERDICT_MAX,
};

/* An IPv6 address, or an IPv4 address in its IPv4-mapped form
 * (::ffff:a.b.c.d, RFC 4291 §2.5.5.2), so one key serves both families. */
struct addr {
	__u8 b[16];
};

/* A device's transport address; port in host byte order. */
struct endpoint {
	struct addr addr;
	__u16 port;
	__u16 pad; /* always zero: part of the hash key */
};

/* Expected reply to an OPTIONS ping carrying "Call-ID: ph-<token as 16 hex>". */
struct natping {
	__u64 token;
	__u64 sent_ns;     /* CLOCK_MONOTONIC, set by userspace */
	__u64 answered_ns; /* CLOCK_MONOTONIC_COARSE, set here; 0 = not yet */
};

/* Token bucket of one source address, in nanotokens (1 request = 1e9). */
struct bucket {
	__u64 tokens;
	__u64 last_ns;
	__u64 dropped; /* requests refused; userspace bans a source that keeps at it */
};

/* Rate limit per source address; rate 0 disables it. Userspace derives
 * burst_nt = burst * 1e9 and fill_ns = burst_nt / rate so that the program
 * never divides and elapsed * rate cannot overflow. */
struct ratecfg {
	__u64 rate;     /* requests per second */
	__u64 burst_nt; /* bucket size in nanotokens */
	__u64 fill_ns;  /* time to fill an empty bucket */
};

struct lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

#define MAX_SIGNATURES 16
#define SIGNATURE_LEN 32

/* A User-Agent prefix, lower-cased, as four little-endian words and the
 * masks that select its bytes; mask[0] == 0 marks an unused slot. */
struct signature {
	__u64 word[SIGNATURE_LEN / 8];
	__u64 mask[SIGNATURE_LEN / 8];
};

struct signatures {
	struct signature sig[MAX_SIGNATURES];
};

#endif
