package promtext

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	text := "# HELP x\n" +
		"pinhole_a_total 3\n" +
		"\n" +
		`pinhole_b_total{verdict="tx"} 1.5` + "\n" +
		"broken_line\n" +
		"pinhole_c NaNish\n"
	want := map[string]float64{"pinhole_a_total": 3, `pinhole_b_total{verdict="tx"}`: 1.5}
	if diff := cmp.Diff(want, Parse(text)); diff != "" {
		t.Fatalf("Parse (-want +got):\n%s", diff)
	}
}
