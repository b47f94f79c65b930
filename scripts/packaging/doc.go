// Package packaging holds pinhole's deployment files — the systemd unit,
// the container image, Kubernetes manifests, the Grafana dashboard, and
// keepalived's configuration with the sysctl for an active/standby pair
// on a virtual address (docs/cluster.md) — and the tests that keep them
// valid (docs/operations.md). It has no code.
package packaging
