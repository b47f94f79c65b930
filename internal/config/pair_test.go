package config

import (
	"errors"
	"strings"
	"testing"
)

// TestPair: a pair's VIP needs the shared store and a UDP listener on the
// VIP itself; a complete pair configuration is accepted.
func TestPair(t *testing.T) {
	const redis = "location:\n  backend: redis\n  redis:\n    addresses: [\"10.0.0.21:6379\"]\n"
	const onVIP = "listen:\n  udp: [\"10.0.0.10:5060\"]\n"
	const vip = "cluster:\n  edge_id: a\n  vip: 10.0.0.10\n"
	tests := []struct {
		name, yaml string
		want       []string // nil: valid
	}{
		{"complete", vip + redis + onVIP, nil},
		{"bbolt", vip + onVIP, []string{"cluster.vip", "location.backend redis"}},
		{"wildcard listener", vip + redis + "listen:\n  udp: [\"0.0.0.0:5060\"]\n", []string{"cluster.vip", "10.0.0.10", "listen.udp"}},
		{"no vip", redis + onVIP, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "t.yaml")
			if tt.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
