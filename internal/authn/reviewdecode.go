package authn

import "strings"

// decodeReviewFast decodes the common shape of a TokenReview request without encoding/json, whose two
// passes over a kilobyte of token were a third of a cached review. It accepts only plain input: every
// string free of escapes, control characters and non-ASCII bytes, no key that differs from a field name
// only in case, no null for a field it reads, nesting at most 32 deep. Anything else returns ok=false
// and encoding/json decides; for what it accepts, the result equals encoding/json's (a differential
// fuzz target checks this).
func decodeReviewFast(data []byte) (r reviewEnvelope, ok bool) {
	d := fastDecoder{data: data}
	d.ws()
	if !d.object(0, func(key string) bool {
		switch {
		case key == "apiVersion":
			return d.str(&r.APIVersion)
		case key == "kind":
			return d.str(&r.Kind)
		case key == "spec":
			return d.object(1, func(key string) bool {
				switch {
				case key == "token":
					return d.str(&r.Spec.Token)
				case key == "audiences":
					return d.strings(&r.Spec.Audiences)
				case strings.EqualFold(key, "token"), strings.EqualFold(key, "audiences"):
					return false
				}
				return d.skip(2)
			})
		case strings.EqualFold(key, "apiVersion"), strings.EqualFold(key, "kind"), strings.EqualFold(key, "spec"):
			return false
		}
		return d.skip(1)
	}) {
		return reviewEnvelope{}, false
	}
	d.ws()
	if d.pos != len(d.data) {
		return reviewEnvelope{}, false
	}
	return r, true
}

const maxFastDepth = 32

type fastDecoder struct {
	data []byte
	pos  int
}

func (d *fastDecoder) ws() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *fastDecoder) consume(c byte) bool {
	d.ws()
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

// object reads {"key": value, ...}, calling member with the decoder positioned at each value.
func (d *fastDecoder) object(depth int, member func(key string) bool) bool {
	if depth > maxFastDepth || !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	for {
		d.ws()
		key, ok := d.rawString()
		if !ok || !d.consume(':') {
			return false
		}
		d.ws()
		if !member(key) {
			return false
		}
		if d.consume(',') {
			continue
		}
		return d.consume('}')
	}
}

// rawString reads a string of printable ASCII without escapes.
func (d *fastDecoder) rawString() (string, bool) {
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return "", false
	}
	start := d.pos + 1
	for i := start; i < len(d.data); i++ {
		switch c := d.data[i]; {
		case c == '"':
			d.pos = i + 1
			return string(d.data[start:i]), true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", false
		}
	}
	return "", false
}

func (d *fastDecoder) str(dst *string) bool {
	s, ok := d.rawString()
	if ok {
		*dst = s
	}
	return ok
}

// strings reads an array of strings into dst, which encoding/json would replace: [] is an empty,
// non-nil slice.
func (d *fastDecoder) strings(dst *[]string) bool {
	if !d.consume('[') {
		return false
	}
	out := []string{}
	if d.consume(']') {
		*dst = out
		return true
	}
	for {
		d.ws()
		s, ok := d.rawString()
		if !ok {
			return false
		}
		out = append(out, s)
		if d.consume(',') {
			continue
		}
		if !d.consume(']') {
			return false
		}
		*dst = out
		return true
	}
}

// skip reads and discards one JSON value, validating it.
func (d *fastDecoder) skip(depth int) bool {
	if depth > maxFastDepth || d.pos >= len(d.data) {
		return false
	}
	switch c := d.data[d.pos]; {
	case c == '"':
		_, ok := d.rawString()
		return ok
	case c == '{':
		return d.object(depth, func(string) bool { return d.skip(depth + 1) })
	case c == '[':
		d.pos++
		if d.consume(']') {
			return true
		}
		for {
			d.ws()
			if !d.skip(depth + 1) {
				return false
			}
			if d.consume(',') {
				continue
			}
			return d.consume(']')
		}
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	}
	return false
}

func (d *fastDecoder) literal(word string) bool {
	if !strings.HasPrefix(string(d.data[d.pos:min(len(d.data), d.pos+len(word))]), word) {
		return false
	}
	d.pos += len(word)
	return true
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *fastDecoder) number() bool {
	digits := func() int {
		n := 0
		for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.data[d.pos] == '-' {
		d.pos++
	}
	if d.pos >= len(d.data) {
		return false
	}
	if d.data[d.pos] == '0' {
		d.pos++
	} else if digits() == 0 {
		return false
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if digits() == 0 {
			return false
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
