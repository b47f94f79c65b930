// Package bencode reads and writes bencoding, the format rtpengine's ng
// control protocol carries its dictionaries in (docs/media.md).
//
// Bencoding has four kinds of value: byte strings, integers, lists and
// dictionaries. They map to Go as string, int64, []any and map[string]any;
// [Marshal] also takes []byte, the other integer types, bool (as 1 or 0)
// and []string for convenience, so that a command can be written as a Go
// literal.
//
// The decoder takes dictionary keys in any order: the specification asks
// for sorted keys but rtpengine does not sort the ones it sends. It refuses
// duplicate keys, integers with leading zeros or "-0", and nesting deeper
// than [MaxDepth], so that a hostile or broken reply cannot make it recurse
// without bound. The encoder always sorts keys, so its output is canonical.
package bencode
