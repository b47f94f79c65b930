package config

import (
	"slices"
	"strings"
)

// Log configures logging (docs/operations.md).
type Log struct {
	Level string `yaml:"level"` // debug, info, warn, error
	// Components override Level per component, e.g. {sipgo: warn, proxy: debug}.
	Components map[string]string `yaml:"components"`
	// Format is text (logfmt) or json.
	Format string `yaml:"format"`
	// Rate is how many records per second each component may write; the
	// rest are dropped and counted, so a flood cannot make logging the
	// bottleneck. 0: no limit.
	Rate int `yaml:"rate"`
}

// LogComponents are the names log.components may use: one per logger the
// daemon hands out. slowpath covers the registrar, the mid-registrar and
// dispatch, which log through the server.
var LogComponents = []string{"main", "slowpath", "proxy", "sipgo", "xdp", "natping", "ban", "mgmt", "capture"}

// LevelOf returns the level of a component: its override, else log.level.
func (l Log) LevelOf(component string) string {
	if v, ok := l.Components[component]; ok {
		return v
	}
	return l.Level
}

func validLevel(l string) bool {
	switch l {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

func (l Log) validate() error {
	if !validLevel(l.Level) {
		return bad("log.level", "%q: must be debug, info, warn or error", l.Level)
	}
	for name, lvl := range l.Components {
		if !slices.Contains(LogComponents, name) {
			return bad("log.components", "%q is not a component: want one of %s", name, strings.Join(LogComponents, ", "))
		}
		if !validLevel(lvl) {
			return bad("log.components", "%s: %q: must be debug, info, warn or error", name, lvl)
		}
	}
	if l.Format != "text" && l.Format != "json" {
		return bad("log.format", "%q: must be text or json", l.Format)
	}
	if l.Rate < 0 || l.Rate > 1_000_000 {
		return bad("log.rate", "%d: must be between 0 (no limit) and 1000000 records per second", l.Rate)
	}
	return nil
}
