// Package location is the binding store: the authority for every
// registration pinhole holds (RFC 3261 §10, RFC 5626 flows, RFC 3327 Path).
//
// The fast path's cache only lets a refresh skip work; what this package says
// is what pinhole knows. Bindings live in a sharded in-memory map packed for
// size (one []byte per AOR), expire from a min-heap per shard driven by one
// goroutine, and are persisted to a backing, a bbolt file or a Redis
// Cluster shared by several edges: changes to the set of bindings are
// written through before Update returns (batched across callers),
// refreshes are written behind every FlushInterval. With Redis, changes
// other edges make reach this edge's view through the cluster's
// client-side caching invalidations (follow.go).
//
// Store is the small interface the registrar, the mid-registrar and the NAT
// pinger use.
// See docs/location.md for the record format, the measured memory per
// binding and the persistence guarantee, docs/cluster.md for Redis.
package location
