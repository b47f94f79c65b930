package natping

import "math/rand/v2"

// newToken returns a random non-zero token (0 is the XDP map's "none").
// The tokens only need to be unguessable enough that an off-path sender
// cannot fake a device's answer: the ChaCha8 generator behind math/rand/v2
// is seeded from the OS.
func newToken() uint64 {
	for {
		if t := rand.Uint64(); t != 0 {
			return t
		}
	}
}
