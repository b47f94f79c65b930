// Package promtext reads the Prometheus text exposition format that
// VictoriaMetrics/metrics writes, into one value per sample name (labels
// included in the name). The management API's stats call and the tests that
// read pinhole's /metrics both use it; it lives at the bottom so that tests
// need not import the daemon's packages to read a counter.
package promtext

import (
	"strconv"
	"strings"
)

// Parse returns the samples of text by name with labels, for example
// `pinhole_xdp_packets_total{verdict="tx"}`. Comments, blank lines and
// lines whose value is not a number are skipped.
func Parse(text string) map[string]float64 {
	m := map[string]float64{}
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}
