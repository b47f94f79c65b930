// Package packaging holds pinhole's deployment files — the systemd unit,
// the container image, Kubernetes manifests and the Grafana dashboard —
// and the tests that keep them valid (docs/operations.md). It has no code.
package packaging
