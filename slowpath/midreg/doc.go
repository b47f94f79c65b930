// Package midreg is pinhole's mid-registrar (docs/midregistrar.md; its modes
// and their reasons: docs/architecture.md, "Mid-registrar modes"):
// it sits in front of a main registrar and turns the high rate of REGISTER
// refreshes from mobile devices into a low one, while every device stays
// reachable through pinhole.
//
// A REGISTER is relayed upstream (RFC 3261 §16, pinhole adding its own Via)
// with pinhole inserted into it — the Contact rewritten to a token that
// names the device's binding, or a Path header (RFC 3327) — and, in the
// throttling modes, with Expires raised to outgoing_expires. Challenges of
// the main registrar go back to the device untouched and the authenticated
// retry goes to the upstream that challenged. On the upstream's 2xx the
// binding is stored in the location store (the single authority) with the
// device's expiry and the upstream's, and the device is answered with its
// own expiry and contacts.
//
// Refreshes from the same flow are then answered by pinhole alone until
// the upstream registration nears its end; a change of contacts, a new
// contact and a de-registration are always relayed. When a binding lapses
// at pinhole, pinhole de-registers it upstream itself (location's
// OnExpire). Requests from the main side to an inserted contact or Path
// are resolved to the device's bindings by Resolve, which the slow path's
// locator asks before the store.
package midreg
