package bencode

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// MaxDepth bounds the nesting of lists and dictionaries the decoder
// accepts. rtpengine's deepest reply (query: tags → medias → streams →
// stats) nests six levels; 32 leaves room and keeps the recursion small.
const MaxDepth = 32

// ErrSyntax is wrapped by every decoding error.
var ErrSyntax = errors.New("bencode: malformed")

// Unmarshal decodes exactly one value that fills all of data.
func Unmarshal(data []byte) (any, error) {
	d := decoder{data: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(data) {
		return nil, d.fail("%d bytes after the value", len(data)-d.pos)
	}
	return v, nil
}

type decoder struct {
	data []byte
	pos  int
}

func (d *decoder) fail(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrSyntax, d.pos, fmt.Sprintf(format, args...))
}

func (d *decoder) value(depth int) (any, error) {
	if d.pos >= len(d.data) {
		return nil, d.fail("unexpected end")
	}
	switch c := d.data[d.pos]; {
	case c == 'i':
		d.pos++
		return d.integer('e')
	case c >= '0' && c <= '9':
		return d.str()
	case c == 'l':
		if depth >= MaxDepth {
			return nil, d.fail("nested deeper than %d", MaxDepth)
		}
		d.pos++
		list := []any{}
		for {
			if d.pos >= len(d.data) {
				return nil, d.fail("unterminated list")
			}
			if d.data[d.pos] == 'e' {
				d.pos++
				return list, nil
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
	case c == 'd':
		if depth >= MaxDepth {
			return nil, d.fail("nested deeper than %d", MaxDepth)
		}
		d.pos++
		dict := map[string]any{}
		for {
			if d.pos >= len(d.data) {
				return nil, d.fail("unterminated dictionary")
			}
			if d.data[d.pos] == 'e' {
				d.pos++
				return dict, nil
			}
			if c := d.data[d.pos]; c < '0' || c > '9' {
				return nil, d.fail("dictionary key is not a string")
			}
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			if _, dup := dict[k]; dup {
				return nil, d.fail("duplicate key %q", k)
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			dict[k] = v
		}
	default:
		return nil, d.fail("unexpected byte %q", c)
	}
}

// integer reads digits up to end: "i42e" after the 'i', or a string's
// length before its ':'.
func (d *decoder) integer(end byte) (int64, error) {
	start := d.pos
	for d.pos < len(d.data) && d.data[d.pos] != end {
		d.pos++
	}
	if d.pos >= len(d.data) {
		return 0, d.fail("unterminated integer")
	}
	digits := string(d.data[start:d.pos])
	d.pos++
	// Canonical form only: no "+", no leading zeros, no "-0".
	if digits == "" || digits == "-" || digits[0] == '+' ||
		(len(digits) > 1 && digits[0] == '0') || (len(digits) > 1 && digits[0] == '-' && digits[1] == '0') {
		return 0, d.fail("integer %q is not canonical", digits)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, d.fail("integer %q: %v", digits, err)
	}
	return n, nil
}

func (d *decoder) str() (string, error) {
	n, err := d.integer(':')
	if err != nil {
		return "", err
	}
	if n < 0 || n > int64(len(d.data)-d.pos) {
		return "", d.fail("string of %d bytes with %d left", n, len(d.data)-d.pos)
	}
	s := string(d.data[d.pos : d.pos+int(n)])
	d.pos += int(n)
	return s, nil
}

// Marshal encodes v; see the package comment for the types it takes.
func Marshal(v any) ([]byte, error) {
	return Append(nil, v)
}

// Append appends v's encoding to b.
func Append(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		return append(b, v...), nil
	case []byte:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		return append(b, v...), nil
	case int:
		return appendInt(b, int64(v)), nil
	case int64:
		return appendInt(b, v), nil
	case int32:
		return appendInt(b, int64(v)), nil
	case uint16:
		return appendInt(b, int64(v)), nil
	case bool:
		if v {
			return appendInt(b, 1), nil
		}
		return appendInt(b, 0), nil
	case []string:
		b = append(b, 'l')
		for _, s := range v {
			b, _ = Append(b, s)
		}
		return append(b, 'e'), nil
	case []any:
		b = append(b, 'l')
		for i, e := range v {
			var err error
			if b, err = Append(b, e); err != nil {
				return nil, fmt.Errorf("list item %d: %w", i, err)
			}
		}
		return append(b, 'e'), nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, 'd')
		for _, k := range keys {
			b, _ = Append(b, k)
			var err error
			if b, err = Append(b, v[k]); err != nil {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
		}
		return append(b, 'e'), nil
	}
	return nil, fmt.Errorf("bencode: cannot encode %T", v)
}

func appendInt(b []byte, n int64) []byte {
	b = append(b, 'i')
	b = strconv.AppendInt(b, n, 10)
	return append(b, 'e')
}
