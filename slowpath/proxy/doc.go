// Package proxy is pinhole's transaction-stateful SIP proxy between
// registered devices (RFC 3261 §16).
//
// A [Proxy] looks the request-URI up in the location store, forks to every
// live contact (in parallel, or serially by q value, RFC 3261 §16.6 and
// §8.1.3.4), relays provisional and final responses back to the caller
// (§16.7), cancels the other branches when one answers (§16.7 step 10,
// Reason per RFC 3326), and Record-Routes dialogs so that in-dialog
// requests come back through pinhole and are loose-routed (§16.4, §16.12).
//
// Devices behind NAT are reached over the flow they registered from: the
// request leaves from the very socket the device talked to, towards the
// address its packets really came from, while the request-URI stays its
// registered Contact (§16.6 step 6). Dialogs with such devices are marked
// in pinhole's Record-Route URI (ftag, nc, nr parameters, see flow.go) so
// that in-dialog requests find the flow again without per-dialog state.
//
// Handle is the per-request entry point, meant to be registered with a
// sipgo server for every method except REGISTER. It does not log per
// request above debug level; outcomes are counted (metrics.go). The
// operator documentation is docs/proxy.md.
package proxy
