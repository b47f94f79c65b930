// Package sanity decides, before sipgo's parser sees a SIP message, whether
// the message is worth parsing, deserves an error response, or should be
// dropped and counted. A UDP datagram is one message; on a stream (TCP,
// TLS) [Frame] first finds each message by its Content-Length, so that
// every transport gets the same [Check].
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
//   - a NUL byte in the start line or a header field, other than a
//     quoted-pair (RFC 3261 §25.1): dropped;
//   - more than [Limits.MaxHeaders] header fields: 400;
//   - a header line without a colon: 400;
//   - Via, From, To, Call-ID or CSeq missing (RFC 3261 §8.1.1): 400;
//   - CSeq not "number method", number above 2^31-1 or method not the
//     request's (RFC 3261 §8.1.1.5): 400;
//   - Content-Length not a number, given twice, or larger than the bytes
//     that follow the header section (RFC 3261 §18.3): 400;
//   - From, To, Call-ID, CSeq, Max-Forwards, Content-Type or Expires more
//     than once (RFC 3261 §7.3: only comma-separated lists may repeat): 400;
//   - an unterminated quoted display name in From, To or Contact, or an
//     addr-spec holding '?' outside <> (RFC 3261 §20.10): 400 (dropped when
//     it is in From or To, which the answer would echo);
//   - a Request-URI outside RFC 3261 §25.1, including a SIP URI with
//     headers (§19.1.1): 400;
//   - a Request-URI scheme other than sip, sips, tel or urn: 416 (RFC 3261
//     §16.3 step 2);
//   - Proxy-Require naming any option-tag, on a request other than ACK or
//     CANCEL: 420 Bad Extension with Unsupported listing them (RFC 3261
//     §16.3 step 6; pinhole implements no proxy extension).
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
// bad_cseq, cseq_mismatch, bad_content_length, duplicate_header, nul_byte,
// bad_extension, bad_address, bad_scheme. [NumReasons] sizes an array of counters
// indexed by Reason.
package sanity
