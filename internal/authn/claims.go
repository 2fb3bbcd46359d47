package authn

// The claims index: one pass over a token's payload, shared by the issuer peek and the fast path,
// instead of an encoding/json decode for each (the peek's, the verifier's typed claims, the raw claims
// and the mapping step's). It accepts only a plain payload: an object whose keys are printable ASCII
// without escapes, no two of them equal but for case, every value valid JSON as fastDecoder reads it
// (strings plain too), at most maxClaimPairs members. For such a payload, encoding/json decoding the
// whole object into a struct is the same as decoding each field from the one member whose key matches
// the field's name (exactly or but for ASCII case, as encoding/json matches names), and decoding it into
// a map is the map of those members. Anything else, and any value a field cannot take, goes to
// encoding/json on the whole payload, which decides and says why. TestClaimsIndexMatchesEncodingJSON
// and FuzzFastPathMatchesGeneralPath hold the two to the same results.

import (
	"encoding/json"
	"strconv"
)

// maxClaimPairs bounds the members the index holds: its uniqueness check is quadratic, and real tokens
// carry a few dozen claims at most. A payload with more goes to encoding/json.
const maxClaimPairs = 64

// claimPair is one member of the payload's object: its key and its value's JSON text, both slices of
// the payload, never copied or modified.
type claimPair struct {
	key, value []byte
}

// claimsIndex is the members of a plain payload, in order.
type claimsIndex []claimPair

// indexClaims indexes a plain payload; ok is false for any other.
func indexClaims(payload []byte) (idx claimsIndex, ok bool) {
	return indexInto(make(claimsIndex, 0, 16), payload)
}

// indexInto is indexClaims appending to idx, so a caller that keeps the index no longer than its own
// frame can hold it in an array there: the few members of a header or of the kubernetes.io claim
// then cost no allocation.
func indexInto(idx claimsIndex, payload []byte) (claimsIndex, bool) {
	d := fastDecoder{data: payload}
	d.ws()
	if !d.members(0, func(key []byte) bool {
		if len(idx) == maxClaimPairs {
			return false
		}
		for _, p := range idx {
			if equalFoldASCII(p.key, key) {
				return false // encoding/json would merge them into one field: let it
			}
		}
		start := d.pos
		if !d.skip(1) {
			return false
		}
		idx = append(idx, claimPair{key: key, value: d.data[start:d.pos]})
		return true
	}) {
		return nil, false
	}
	d.ws()
	if d.pos != len(d.data) {
		return nil, false
	}
	return idx, true
}

// field is the value of the member encoding/json would decode into a struct field named name: the
// one whose key equals name but for ASCII case (keys are unique but for case).
func (idx claimsIndex) field(name string) ([]byte, bool) {
	for _, p := range idx {
		if equalFoldASCII(p.key, name) {
			return p.value, true
		}
	}
	return nil, false
}

// get is the value of the member named exactly name, as a map[string]json.RawMessage of the payload
// holds it (the index holds no two keys equal but for case, so at most one).
func (idx claimsIndex) get(name string) (json.RawMessage, bool) {
	for _, p := range idx {
		if string(p.key) == name {
			return p.value, true
		}
	}
	return nil, false
}

// rawMap is the payload decoded into map[string]json.RawMessage, as encoding/json would.
func (idx claimsIndex) rawMap() map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, len(idx))
	for _, p := range idx {
		m[string(p.key)] = p.value
	}
	return m
}

// indexOfMap is the index of raw claims encoding/json decoded, for get: the payloads the index does
// not read itself, whose map may hold keys equal but for case (get matches exactly, as the map does).
func indexOfMap(m map[string]json.RawMessage) claimsIndex {
	idx := make(claimsIndex, 0, len(m))
	for k, v := range m {
		idx = append(idx, claimPair{key: []byte(k), value: v})
	}
	return idx
}

// issuer is PeekIssuer's decode of iss: a pointer to a string, nil when absent or null.
func (idx claimsIndex) issuer() (*string, error) {
	v, ok := idx.field("iss")
	if !ok {
		return nil, nil
	}
	var iss *string
	err := unmarshalValue(v, &iss)
	return iss, err
}

// registered decodes the verifier's typed claims; ok is false when a value does not fit its field,
// and encoding/json must decode the whole payload to say why.
func (idx claimsIndex) registered() (c registeredClaims, ok bool) {
	ok = idx.decodeFields(
		fieldDst{"iss", &c.Issuer}, fieldDst{"sub", &c.Subject}, fieldDst{"aud", &c.Audience},
		fieldDst{"exp", &c.Expiry}, fieldDst{"iat", &c.IssuedAt}, fieldDst{"nbf", &c.NotBefore},
		fieldDst{"nonce", &c.Nonce}, fieldDst{"at_hash", &c.AtHash},
		fieldDst{"_claim_names", &c.ClaimNames}, fieldDst{"_claim_sources", &c.ClaimSources})
	if !ok {
		return registeredClaims{}, false
	}
	return c, true
}

// tokenClaims decodes the mapping step's claims; ok is false as for registered.
func (idx claimsIndex) tokenClaims() (c tokenClaims, ok bool) {
	ok = idx.decodeFields(
		fieldDst{"aud", &c.Audience}, fieldDst{"exp", &c.Expiry}, fieldDst{"nbf", &c.NotBefore},
		fieldDst{"iat", &c.IssuedAt}, fieldDst{"kubernetes.io", &c.K8s})
	if !ok {
		return tokenClaims{}, false
	}
	return c, true
}

// unmarshalValue is json.Unmarshal of one valid JSON value (fastDecoder or encoding/json validated it) into dst. The types
// the claims use most take a shortcut where its result is plainly encoding/json's: a plain string
// (printable ASCII, no escapes: the bytes between the quotes are the string) into a string, a number
// into a float64 (strconv.ParseFloat on its text, as encoding/json does; out of range goes to
// encoding/json for its error), and the time and audience claims straight to their UnmarshalJSON,
// which is all encoding/json does with a valid value for a type that has one (null included, but for
// a pointer, which null leaves nil).
func unmarshalValue(v []byte, dst any) error {
	switch dst := dst.(type) {
	case *oidcTime:
		return dst.UnmarshalJSON(v)
	case **oidcTime:
		if string(v) == "null" {
			*dst = nil
			return nil
		}
		t := new(oidcTime)
		*dst = t
		return t.UnmarshalJSON(v)
	case *audience:
		return dst.UnmarshalJSON(v)
	case **k8sTokenClaims:
		if c, ok := k8sClaims(v); ok {
			*dst = c
			return nil
		}
	case **namedUID:
		if n, ok := namedUIDOf(v); ok {
			*dst = n
			return nil
		}
	case *string:
		if s, ok := plainString(v); ok {
			*dst = s
			return nil
		}
	case **string:
		if s, ok := plainString(v); ok {
			*dst = &s
			return nil
		}
	case **float64:
		if isNumber(v) {
			if f, err := strconv.ParseFloat(string(v), 64); err == nil {
				*dst = &f
				return nil
			}
		}
	}
	return json.Unmarshal(v, dst)
}

// k8sClaims decodes the kubernetes.io claim as encoding/json decodes it into a *k8sTokenClaims, when it
// is null or a plain object whose members fit; ok is false otherwise.
func k8sClaims(v []byte) (*k8sTokenClaims, bool) {
	if string(v) == "null" {
		return nil, true
	}
	var members [8]claimPair
	idx, ok := indexInto(members[:0], v)
	if !ok {
		return nil, false
	}
	c := new(k8sTokenClaims)
	return c, idx.decodeFields(
		fieldDst{"namespace", &c.Namespace}, fieldDst{"serviceaccount", &c.ServiceAccount},
		fieldDst{"pod", &c.Pod}, fieldDst{"node", &c.Node})
}

// namedUIDOf decodes a {name, uid} member of the kubernetes.io claim likewise.
func namedUIDOf(v []byte) (*namedUID, bool) {
	if string(v) == "null" {
		return nil, true
	}
	var members [4]claimPair
	idx, ok := indexInto(members[:0], v)
	if !ok {
		return nil, false
	}
	n := new(namedUID)
	return n, idx.decodeFields(fieldDst{"name", &n.Name}, fieldDst{"uid", &n.UID})
}

// fieldDst is a struct field: its JSON name and where it is decoded to.
type fieldDst struct {
	name string
	dst  any
}

// decodeFields decodes each field from its member, if any; it reports false at the first value that
// does not fit.
func (idx claimsIndex) decodeFields(fields ...fieldDst) bool {
	for _, f := range fields {
		if v, found := idx.field(f.name); found && unmarshalValue(v, f.dst) != nil {
			return false
		}
	}
	return true
}

// plainString reads a whole value that is a plain string.
func plainString(v []byte) (string, bool) {
	d := fastDecoder{data: v}
	s, ok := d.rawString()
	return s, ok && d.pos == len(v)
}

// plainStrings reads a whole value that is a list of plain strings ([] is empty, not nil, as
// encoding/json makes it).
func plainStrings(v []byte) ([]string, bool) {
	d := fastDecoder{data: v}
	var l []string
	return l, d.strings(&l) && d.pos == len(v)
}

// isNumber reports whether the whole value is a JSON number.
func isNumber(v []byte) bool {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return false
	}
	d := fastDecoder{data: v}
	return d.number() && d.pos == len(v)
}

// equalFoldASCII reports whether a and b are equal but for the case of ASCII letters.
func equalFoldASCII[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
