// Package layers holds no code: its test keeps the package layers drawn in
// docs/architecture.md ("Package layers") true as the tree grows. A new
// import that runs back up a layer fails `make test` instead of waiting for
// a reviewer to notice.
package layers
