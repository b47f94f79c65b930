// Command kamailio-cfg prints the configuration of the Kamailio registrar
// the bench scripts measure pinhole against, from the same template the
// integration tests start Kamailio with (internal/kamailiocfg), with the
// module directory of the Kamailio installed on this machine.
//
// With -modules-dir it prints only that directory, for scripts that write
// a Kamailio configuration of another kind (bench/dispatch/run.sh).
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"

	"github.com/pinhole-sip/pinhole/internal/kamailiocfg"
)

func main() {
	var r kamailiocfg.Registrar
	listen := flag.String("listen", "127.0.0.1:5060", "UDP `address:port` to listen on")
	flag.StringVar(&r.Domain, "domain", "", "domain served and realm (an alias); none when empty")
	flag.IntVar(&r.Children, "children", 2, "UDP worker processes")
	flag.IntVar(&r.Debug, "debug", 0, "log level")
	flag.StringVar(&r.Ctl, "ctl", "", "unix socket `path` for kamcmd; no ctl module when empty")
	flag.IntVar(&r.MinExpires, "min-expires", 60, "registrar min_expires, seconds")
	flag.IntVar(&r.MaxExpires, "max-expires", 7200, "registrar max_expires, seconds")
	flag.IntVar(&r.HashSize, "hash-size", 0, "usrloc hash_size (2^n slots); 0 keeps Kamailio's default")
	auth := flag.String("auth", string(kamailiocfg.Derived), "authentication: none, or derived (qop=auth, password pw-<user> as sipload's devices)")
	modules := flag.String("modules", "", "Kamailio module `directory`; found from the installed kamailio when empty")
	onlyModules := flag.Bool("modules-dir", false, "print the module directory and nothing else")
	flag.Parse()

	if *modules == "" {
		dir, err := kamailiocfg.ModulesDir(kamailiocfg.Binary())
		if err != nil {
			fail(err)
		}
		*modules = dir
	}
	if *onlyModules {
		fmt.Println(*modules)
		return
	}
	r.Modules = *modules
	r.Auth = kamailiocfg.Auth(*auth)
	if r.Auth == kamailiocfg.Subscribers {
		fail(fmt.Errorf("-auth %s is for the integration tests (internal/testutil)", r.Auth))
	}
	addr, err := netip.ParseAddrPort(*listen)
	if err != nil {
		fail(fmt.Errorf("-listen: %w", err))
	}
	r.Listen = addr
	if err := r.Write(os.Stdout); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kamailio-cfg:", err)
	os.Exit(2)
}
