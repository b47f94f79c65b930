package config

// Registrar holds the expiry bounds granted to devices (RFC 3261 §10.3).
type Registrar struct {
	MinExpires     int `yaml:"min_expires"`
	MaxExpires     int `yaml:"max_expires"`
	DefaultExpires int `yaml:"default_expires"`
	MaxContacts    int `yaml:"max_contacts"`
}

func (r Registrar) validate() error {
	switch {
	case r.MinExpires < 1:
		return bad("registrar.min_expires", "%d: must be at least 1 second", r.MinExpires)
	case r.MaxExpires < r.MinExpires:
		return bad("registrar.max_expires", "%d is below min_expires %d", r.MaxExpires, r.MinExpires)
	case r.DefaultExpires < r.MinExpires || r.DefaultExpires > r.MaxExpires:
		return bad("registrar.default_expires", "%d is outside [%d, %d]", r.DefaultExpires, r.MinExpires, r.MaxExpires)
	case r.MaxContacts < 1:
		return bad("registrar.max_contacts", "%d: must be at least 1", r.MaxContacts)
	}
	return nil
}
