// Package scan reads the few fields of a REGISTER that the fast path
// needs, without allocating and without a SIP parser.
//
// [Scan] makes one pass over the start line and the header section and
// records where each field's value lies in the datagram (slices alias the
// datagram; nothing is copied). It is deliberately narrower than RFC 3261:
// whatever it cannot vouch for is refused with a [Reason], and the caller
// hands the datagram to the slow path, whose full parser decides. Refused
// are, among others: folded header lines (RFC 3261 §7.3.1 allows them; the
// values would have to be rebuilt), bare CR or LF, a second From, To,
// Call-ID, CSeq, Expires, User-Agent, Supported or Max-Forwards, a comma
// inside a Via or Contact value (several values on one line), Require,
// Proxy-Require, Path, Route and any body, more Vias or Contacts than the
// fixed arrays hold, and datagrams over the size or header-count limits.
//
// Refusing is always safe: a refused REGISTER costs the slow path's work,
// never a binding. Accepting is what must be right; FuzzScanVsSipgo checks
// that whenever both Scan and sipgo's parser accept a datagram they agree
// on every field the fast path uses.
package scan
