package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStreamsDefaultsAndBounds(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := Streams{MaxConnections: 10000, MaxPerSource: 100, IdleTimeout: time.Hour + 5*time.Minute,
		HandshakeTimeout: 10 * time.Second, MessageTimeout: 20 * time.Second, FDReserve: 512}
	if cfg.Streams != want {
		t.Errorf("default streams %+v, want %+v", cfg.Streams, want)
	}
	// The idle timeout outlasts the longest registration: a device that
	// only refreshes keeps its connection.
	if cfg.Streams.IdleTimeout <= time.Duration(cfg.Registrar.MaxExpires)*time.Second {
		t.Errorf("idle_timeout %s within registrar.max_expires %ds", cfg.Streams.IdleTimeout, cfg.Registrar.MaxExpires)
	}
	bad := map[string]string{
		"streams: {max_connections: 0}":                      "streams.max_connections",
		"streams: {max_connections: 10, max_per_source: 11}": "streams.max_per_source",
		"streams: {idle_timeout: 1s}":                        "streams.idle_timeout",
		"streams: {handshake_timeout: 100ms}":                "streams.handshake_timeout",
		"streams: {message_timeout: 10m}":                    "streams.message_timeout",
		"streams: {fd_reserve: -1}":                          "streams.fd_reserve",
	}
	for in, key := range bad {
		_, err := Parse([]byte(in), "t.yaml")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v, want an error naming %s", in, err, key)
		}
	}
}
