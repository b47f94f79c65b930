package main

import (
	"log/slog"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/internal/capture"
	"github.com/pinhole-sip/pinhole/internal/config"
)

// startCapture starts the HEP capture when capture.enabled (nil, and a
// stop that does nothing, when not) and publishes its metrics.
func startCapture(cc config.Capture, log *slog.Logger) (*capture.Capturer, func(), error) {
	if !cc.Enabled {
		return nil, func() {}, nil
	}
	cols := make([]capture.Collector, 0, len(cc.Collectors))
	for _, c := range cc.ParseCollectors() {
		cols = append(cols, capture.Collector{Network: c.Network, Addr: c.Addr})
	}
	c, err := capture.New(capture.Config{
		Collectors: cols, CaptureID: cc.CaptureID, Sample: cc.SampleRate(), QueueSize: cc.QueueSize,
		Received: cc.Received, Sent: cc.Sent, Log: log,
	})
	if err != nil {
		return nil, nil, err
	}
	c.Start()
	set := metrics.NewSet()
	set.RegisterMetricsWriter(c.WriteMetrics)
	metrics.RegisterSet(set)
	log.Info("HEP capture on", "collectors", cc.Collectors, "sample_percent", cc.Sample, "capture_id", cc.CaptureID)
	return c, func() {
		metrics.UnregisterSet(set, true)
		c.Close()
	}, nil
}
