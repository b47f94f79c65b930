package config

import (
	"reflect"
	"slices"
	"strings"
)

// Diff returns the dotted keys whose values differ between a and b
// ("dispatch.sets", "xdp.rate"), sorted: a top-level section's own fields
// are compared one by one, anything deeper as a whole.
func Diff(a, b *Config) []string {
	var out []string
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	t := va.Type()
	for i := range t.NumField() {
		name := yamlName(t.Field(i))
		if name == "" {
			continue
		}
		fa, fb := va.Field(i), vb.Field(i)
		if fa.Kind() != reflect.Struct {
			if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
				out = append(out, name)
			}
			continue
		}
		for j := range fa.NumField() {
			sub := yamlName(fa.Type().Field(j))
			if sub == "" {
				continue
			}
			if !reflect.DeepEqual(fa.Field(j).Interface(), fb.Field(j).Interface()) {
				out = append(out, name+"."+sub)
			}
		}
	}
	slices.Sort(out)
	return out
}

func yamlName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" || !f.IsExported() {
		return ""
	}
	return tag
}

// Reloadable reports whether a key's change takes effect on reload
// (SIGHUP or the API's reload) rather than at the next restart. What a
// reload changes is listed in docs/operations.md. auth.credentials reloads
// only while authentication stays on: turning it on or off is a restart
// (the caller checks that).
func Reloadable(key string) bool {
	switch key {
	case "dispatch.register", "log.format":
		// Edge-relay mode decides who handles REGISTER; the log's writer
		// is made once: both wait for a restart.
		return false
	case "limits.max_headers", "limits.max_message_bytes",
		"auth.credentials",
		"xdp.rate", "xdp.burst", "xdp.blocklist", "xdp.signatures":
		return true
	}
	section, _, _ := strings.Cut(key, ".")
	// tls: every handshake reads the settings and certificates current
	// at its start (slowpath/certs), so all of them reload.
	return section == "dispatch" || section == "log" || section == "tls"
}
