// Package dispatch chooses a node of a farm (FreeSWITCH, a registrar
// cluster) for requests pinhole relays there: the edge-proxy topology of
// docs/architecture.md, "Edge proxy toward a farm".
//
// A [Dispatcher] holds named sets of destinations, each with a weight, a
// priority and free-form attributes, and rules that pick a set for a request
// by method, request-URI domain, request-URI user prefix and source address.
// [Dispatcher.Select] returns every usable destination of a set in the
// order they should be tried: the algorithm's choice first, then the
// failover order (same priority, then lower priorities). The proxy walks that
// list serially (slowpath/proxy), moving on when a destination times out or
// answers one of the configured failover codes.
//
// Algorithms: round robin, smooth weighted round robin, hash of the
// request-URI user (a conference, queue or parking lot stays on one node),
// hash of the To domain (one tenant per node, spares at a lower priority),
// hash of the Call-ID, and least active calls. The hashes are taken over the
// configured list of a priority group, not over the nodes that are up, so a
// key keeps its node while other nodes come and go.
//
// A [Prober] sends OPTIONS to every destination at an interval; a node is
// taken out after DownAfter failures in a row and put back after UpAfter
// successes. A 503 to a call can take it out at once. An operator can
// force a node out or in with [Dispatcher.SetState] (the management API's
// hook); [Dispatcher.Destinations] is the view it shows.
//
// The dispatcher keeps two small tables with an expiry: the node of each
// answered call (for least-calls and the active-call gauges, removed on BYE)
// and the node that challenged a request (so the authenticated retry reaches
// it: only that node knows its nonce). Neither is needed to route a
// dialog: that lives in Record-Route.
//
// The operator documentation is docs/dispatch.md.
package dispatch
