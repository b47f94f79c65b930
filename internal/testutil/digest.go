package testutil

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
)

// HA1MD5 is the RFC 2617 digest HA1, hex(MD5("user:realm:password")), the
// form pinhole's credentials file stores instead of the password.
func HA1MD5(user, realm, password string) string {
	sum := md5.Sum([]byte(user + ":" + realm + ":" + password))
	return hex.EncodeToString(sum[:])
}

// HA1SHA256 is the RFC 7616 SHA-256 form of HA1.
func HA1SHA256(user, realm, password string) string {
	sum := sha256.Sum256([]byte(user + ":" + realm + ":" + password))
	return hex.EncodeToString(sum[:])
}
