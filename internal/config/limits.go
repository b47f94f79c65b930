package config

// Limits bound what a message may cost before it is refused.
type Limits struct {
	MaxMessageBytes int `yaml:"max_message_bytes"`
	MaxHeaders      int `yaml:"max_headers"`
}

func (l Limits) validate() error {
	// 65535 is the largest UDP payload; stream transports are bounded the same way
	// so that one connection cannot make pinhole buffer more.
	if l.MaxMessageBytes < 1024 || l.MaxMessageBytes > 65535 {
		return bad("limits.max_message_bytes", "%d: must be between 1024 and 65535", l.MaxMessageBytes)
	}
	if l.MaxHeaders < 16 || l.MaxHeaders > 1024 {
		return bad("limits.max_headers", "%d: must be between 16 and 1024", l.MaxHeaders)
	}
	return nil
}
