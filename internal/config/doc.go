// Package config reads pinhole's YAML configuration into one typed,
// validated Config. Every feature owns a sub-struct; validation errors name
// the key and the line of the file so an operator can fix it at once.
package config
