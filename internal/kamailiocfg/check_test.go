//go:build integration

package kamailiocfg

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Kamailio itself accepts every configuration Write produces, with the
// module directory ModulesDir finds on this machine.
func TestKamailioAcceptsConfig(t *testing.T) {
	bin := Binary()
	modules, err := ModulesDir(bin)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteSubscribers(dir, "localhost", map[string]string{"alice": "secret"}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []Auth{None, Derived, Subscribers} {
		r := registrar(a)
		r.Modules, r.Ctl = modules, filepath.Join(dir, "ctl.sock")
		if a == Subscribers {
			r.DB = dir
		}
		path := filepath.Join(dir, string(a)+".cfg")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Write(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
			t.Errorf("kamailio -c rejects the %s configuration: %v\n%s", a, err, out)
		}
	}
}
