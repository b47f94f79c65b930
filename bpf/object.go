package bpf

import (
	"crypto/sha256"
	"encoding/hex"
)

// ObjectSHA256 is the SHA-256 of the compiled XDP object embedded in the
// binary (xdp_bpfel.o), so an operator can tell which program a build
// loads and compare it with the committed file (sha256sum bpf/xdp_bpfel.o).
func ObjectSHA256() string {
	sum := sha256.Sum256(_XdpBytes)
	return hex.EncodeToString(sum[:])
}
