package location

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSortByQContact: highest q first, then by Contact, whatever the
// second each binding was last written (which Lookup orders by).
func TestSortByQContact(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	bs := []Binding{
		{Contact: "sip:b@192.0.2.2", Q: 500, Updated: t0.Add(3 * time.Second)},
		{Contact: "sip:c@192.0.2.3", Q: 1000, Updated: t0},
		{Contact: "sip:a@192.0.2.1", Q: 500, Updated: t0.Add(time.Second)},
		{Contact: "sip:d@192.0.2.4", Q: 900, Updated: t0.Add(9 * time.Second)},
	}
	SortByQContact(bs)
	var got []string
	for _, b := range bs {
		got = append(got, b.Contact)
	}
	want := []string{"sip:c@192.0.2.3", "sip:d@192.0.2.4", "sip:a@192.0.2.1", "sip:b@192.0.2.2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}
