package config

// TLS names the certificate for TLS and WSS. Both empty: a self-signed
// certificate is generated into data_dir at first start.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

func (t TLS) validate() error {
	if (t.Cert == "") != (t.Key == "") {
		return bad("tls", "give both cert and key, or neither for a generated self-signed pair")
	}
	return nil
}
