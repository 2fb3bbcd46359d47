package authn

// The TokenReview codec: requests are decoded by a one-pass decoder for the shape kube-apiserver sends
// (anything else goes to encoding/json), answers are encoded without reflection. Both are proven equal
// to encoding/json by differential tests and fuzz targets.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	authenticationv1 "k8s.io/api/authentication/v1"
	authenticationv1beta1 "k8s.io/api/authentication/v1beta1"
)

// reviewEnvelope is the part of a TokenReview the handler reads. v1 and v1beta1 share this shape.
type reviewEnvelope struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		Token     string   `json:"token"`
		Audiences []string `json:"audiences"`
	} `json:"spec"`
}

// ErrBadReview is wrapped by decodeReview errors.
var ErrBadReview = errors.New("invalid TokenReview")

// decodeReview parses a TokenReview request body: the common shape with decodeReviewFast, anything else
// with encoding/json.
func decodeReview(body []byte) (*reviewEnvelope, error) {
	r, ok := decodeReviewFast(body)
	if !ok {
		r = reviewEnvelope{}
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, fmt.Errorf("%w: could not decode JSON", ErrBadReview)
		}
	}
	if r.Kind != "TokenReview" {
		return nil, fmt.Errorf("%w: kind must be TokenReview", ErrBadReview)
	}
	switch r.APIVersion {
	case authenticationv1.SchemeGroupVersion.String(), authenticationv1beta1.SchemeGroupVersion.String():
	default:
		return nil, fmt.Errorf("%w: apiVersion must be authentication.k8s.io/v1 or v1beta1", ErrBadReview)
	}
	return &r, nil
}

// writeReview answers in the requested version (v1 and v1beta1 share the shape), encoding into buf
// without reflection; the bytes equal encoding/json's for the same TokenReview (tested). The response is
// built from the status alone, so spec.token can never leak back to the caller.
func writeReview(w http.ResponseWriter, buf *bytes.Buffer, apiVersion string, status authenticationv1.TokenReviewStatus) {
	b := appendReviewStart(buf.AvailableBuffer(), apiVersion)
	b = appendStatus(b, status)
	writeReviewEnd(w, buf, b)
}

// writeEncodedReview is writeReview of a status appendStatus has encoded: the result cache keeps a
// success's encoding, so answering it again costs no encoding.
func writeEncodedReview(w http.ResponseWriter, buf *bytes.Buffer, apiVersion string, status []byte) {
	b := appendReviewStart(buf.AvailableBuffer(), apiVersion)
	b = append(b, status...)
	writeReviewEnd(w, buf, b)
}

// appendReviewStart appends a TokenReview up to its status.
func appendReviewStart(b []byte, apiVersion string) []byte {
	b = append(b, `{"kind":"TokenReview","apiVersion":`...)
	b = appendJSONString(b, apiVersion)
	return append(b, `,"metadata":{},"spec":{},"status":`...)
}

// writeReviewEnd closes the TokenReview in b and writes it; buf keeps b's array if it grew.
func writeReviewEnd(w http.ResponseWriter, buf *bytes.Buffer, b []byte) {
	b = append(b, "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
	if cap(b) > buf.Cap() {
		*buf = *bytes.NewBuffer(b[:0]) // keep the grown array for the next review
	}
}

// appendStatus appends the status object of a TokenReview as encoding/json encodes it.
func appendStatus(b []byte, status authenticationv1.TokenReviewStatus) []byte {
	b = append(b, '{')
	comma := false
	field := func(name string) {
		if comma {
			b = append(b, ',')
		}
		comma = true
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	if status.Authenticated {
		field("authenticated")
		b = append(b, "true"...)
	}
	field("user")
	b = appendUser(b, status.User)
	if len(status.Audiences) > 0 {
		field("audiences")
		b = appendStrings(b, status.Audiences)
	}
	if status.Error != "" {
		field("error")
		b = appendJSONString(b, status.Error)
	}
	return append(b, '}')
}

func appendUser(b []byte, u authenticationv1.UserInfo) []byte {
	b = append(b, '{')
	comma := false
	sep := func() {
		if comma {
			b = append(b, ',')
		}
		comma = true
	}
	if u.Username != "" {
		sep()
		b = append(b, `"username":`...)
		b = appendJSONString(b, u.Username)
	}
	if u.UID != "" {
		sep()
		b = append(b, `"uid":`...)
		b = appendJSONString(b, u.UID)
	}
	if len(u.Groups) > 0 {
		sep()
		b = append(b, `"groups":`...)
		b = appendStrings(b, u.Groups)
	}
	if len(u.Extra) > 0 {
		sep()
		b = append(b, `"extra":{`...)
		keys := make([]string, 0, len(u.Extra))
		for k := range u.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			if u.Extra[k] == nil {
				b = append(b, "null"...)
			} else {
				b = appendStrings(b, u.Extra[k])
			}
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONString quotes s as encoding/json does by default: HTML-safe, invalid UTF-8 replaced by
// U+FFFD, and U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// decodeReviewFast decodes the common shape of a TokenReview request in one pass without reflection:
// encoding/json scans the body once to validate it and again to decode it, and the token, a kilobyte
// or more, dominates the body. It accepts only plain input: every
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
	return d.members(depth, func(key []byte) bool { return member(string(key)) })
}

// members is object with each key as the bytes of the input that spell it, not copied.
func (d *fastDecoder) members(depth int, member func(key []byte) bool) bool {
	if depth > maxFastDepth || !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	for {
		d.ws()
		key, ok := d.rawBytes()
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
	b, ok := d.rawBytes()
	return string(b), ok
}

// rawBytes is rawString as the bytes between the quotes, not copied.
func (d *fastDecoder) rawBytes() ([]byte, bool) {
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return nil, false
	}
	start := d.pos + 1
	for i := start; i < len(d.data); i++ {
		switch c := d.data[i]; {
		case c == '"':
			d.pos = i + 1
			return d.data[start:i], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
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
