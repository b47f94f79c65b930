// Package sanity decides, before sipgo's parser sees a UDP datagram, whether
// the datagram is worth parsing, deserves an error response, or should be
// dropped and counted.
//
// sipgo parses every datagram with its full parser and, on failure, logs the
// whole packet at error level and drops it without the 400 that RFC 3261
// §16.3/§8.2 asks for. pinhole installs a sipgo read filter that calls
// [Check] first: junk and keepalives are dropped and counted, malformed
// requests get a short stateless error response built here, and only
// datagrams that look like complete SIP messages reach the parser.
//
// The checks follow the spirit of Kamailio's sanity module and are cheap:
// one pass over the start line and header section, no allocation when the
// datagram passes. They are not a SIP parser; they only refuse what sipgo
// would refuse or what RFC 3261 says must be answered with an error.
//
// Rules, in the order they are applied:
//
//   - only CR/LF bytes, at most 4: a RFC 5626 §3.5.1 keepalive, dropped
//     (answered by the XDP layer, not here);
//   - not a request or status line: dropped, never answered, so pinhole
//     cannot be used as an amplifier;
//   - larger than [Limits.MaxMessageBytes]: 513 (RFC 3261 §21.5.14);
//   - malformed Request-Line: 400; SIP version other than SIP/2.0: 505
//     (RFC 3261 §21.5.6);
//   - no empty line ending the header section (RFC 3261 §7): 400;
//   - more than [Limits.MaxHeaders] header fields: 400;
//   - a header line without a colon: 400;
//   - Via, From, To, Call-ID or CSeq missing (RFC 3261 §8.1.1): 400;
//   - CSeq not "number method", number above 2^31-1 or method not the
//     request's (RFC 3261 §8.1.1.5): 400;
//   - Content-Length not a number or larger than the bytes that follow the
//     header section (RFC 3261 §18.3): 400.
//
// A response is built only for a request other than ACK (RFC 3261 §17.2.1)
// that has at least one Via to answer to; everything else that fails a check
// is dropped. Responses to pinhole are never answered. The error response
// copies the Via, From, To, Call-ID and CSeq header fields of the request
// (RFC 3261 §8.2.6.2), adds a To tag derived from the Call-ID when To has
// none, and is sent by the caller to the datagram's source.
//
// # Metrics
//
// [Reason.String] values are meant as the label of a per-event-loop counter
// the caller publishes, for example pinhole_sanity_verdicts_total{action,
// reason}: ok, keepalive, empty, too_large, not_sip, bad_start_line,
// bad_version, truncated, too_many_headers, bad_header, missing_header,
// bad_cseq, cseq_mismatch, bad_content_length. [NumReasons] sizes an array of
// counters indexed by Reason.
package sanity
