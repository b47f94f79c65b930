package location

import (
	"cmp"
	"slices"
	"strings"
)

// SortByQContact puts bindings in the order a registrar's 200 lists them:
// highest q first (RFC 3261 §10.2.1.2: the q-value ranks contacts), then
// by Contact. RFC 3261 fixes no order within a q. This one depends only
// on what the bindings are, not on when the store last wrote each (as
// Lookup's order does), so the fast path, which refreshes bindings before
// the store hears of it, lists them exactly as the slow path does
// (docs/fastpath.md, "AORs with several registrations").
func SortByQContact(bs []Binding) {
	slices.SortStableFunc(bs, func(a, b Binding) int {
		if c := cmp.Compare(b.Q, a.Q); c != 0 {
			return c
		}
		return strings.Compare(a.Contact, b.Contact)
	})
}
