package authn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// checkClaimsIndex requires the claims index of payload, when it indexes it at all, to decode what
// encoding/json decodes from the whole payload, field for field, and to fail where it fails: PeekIssuer's
// iss, the verifier's typed claims, the raw claims and the mapping step's claims.
func checkClaimsIndex(tb testing.TB, payload []byte) (indexed bool) {
	tb.Helper()
	idx, ok := indexClaims(payload)
	if !ok {
		return false
	}
	var peek struct {
		Issuer *string `json:"iss"`
	}
	wantErr := json.Unmarshal(payload, &peek)
	iss, err := idx.issuer()
	if (err != nil) != (wantErr != nil) || (err == nil && !reflect.DeepEqual(iss, peek.Issuer)) {
		tb.Errorf("payload %q: iss %v (%v), encoding/json %v (%v)", payload, deref(iss), err, deref(peek.Issuer), wantErr)
	}

	var reg registeredClaims
	wantErr = json.Unmarshal(payload, &reg)
	got, ok := idx.registered()
	if ok != (wantErr == nil) || (ok && !reflect.DeepEqual(got, reg)) {
		tb.Errorf("payload %q: typed claims %+v (ok %v), encoding/json %+v (%v)", payload, got, ok, reg, wantErr)
	}

	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		tb.Errorf("payload %q: indexed, but encoding/json refuses it: %v", payload, err)
	} else if m := idx.rawMap(); !reflect.DeepEqual(m, raw) {
		tb.Errorf("payload %q: raw claims %q, encoding/json %q", payload, m, raw)
	} else {
		for _, name := range append(slices.Collect(maps.Keys(raw)), matrixClaims...) {
			got, found := idx.get(name)
			want, wantFound := raw[name]
			if found != wantFound || !bytes.Equal(got, want) {
				tb.Errorf("payload %q: claim %q is %q (%v), encoding/json %q (%v)", payload, name, got, found, want, wantFound)
			}
		}
	}

	var tc tokenClaims
	wantErr = json.Unmarshal(payload, &tc)
	gotTC, ok := idx.tokenClaims()
	if ok != (wantErr == nil) || (ok && !reflect.DeepEqual(gotTC, tc)) {
		tb.Errorf("payload %q: mapping claims %+v (ok %v), encoding/json %+v (%v)", payload, gotTC, ok, tc, wantErr)
	}
	return true
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestClaimsIndexMatchesEncodingJSON runs checkClaimsIndex over the differential payloads, every claim
// of the matrix set to every class of value, and payloads aimed at where a one-pass index could part
// from encoding/json: keys that differ only in case or repeat, escapes, non-ASCII, nesting, numbers at
// the edges of float64 and int64.
func TestClaimsIndexMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	payloads := differentialPayloads("https://hub.example")
	for _, claim := range matrixClaims {
		for _, v := range slices.Sorted(maps.Values(matrixValues)) {
			payloads = append(payloads, fmt.Sprintf(`{"iss":"https://hub.example","sub":"a",%q:%s}`, claim, v))
			payloads = append(payloads, fmt.Sprintf(`{%q:%s}`, strings.ToUpper(claim), v))
		}
	}
	payloads = append(payloads,
		`{}`, ` { } `, `{"iss":"a"} `, `{"iss":"a"}x`, `{"iss":"a",}`, `{"iss":"a","iss":"b"}`, `{"iss":"a","ISS":"b"}`,
		`{"Iss":"a"}`, `{"iss":"\u0061"}`, `{"i\u0073s":"a"}`, `{"iss":"é"}`, `{"ıss":"a"}`, `{"ſub":"a"}`,
		`{"kubernetes.io":{"namespace":"a","Namespace":"b"}}`, `{"Kubernetes.IO":{"namespace":"a"}}`,
		`{"kubernetes.io":{"serviceaccount":null,"pod":{"name":5}}}`, `{"kubernetes.io":{"serviceaccount":{"name":"a","NAME":"b"}}}`,
		`{"kubernetes.io":{"node":[]}}`, `{"kubernetes.io":{"namespace":null,"pod":{"uid":null}}}`, `{"kubernetes.io":{"Pod":{"Name":"p"}}}`,
		`{"kubernetes.io":{"namespace":"a","serviceaccount":{"name":"s","uid":"u"},"pod":{"name":"p","uid":"v"},"node":{"name":"n"},"x":[1]}}`,
		`{"exp":1e308}`, `{"exp":-1e400}`, `{"exp":9223372036854775808}`, `{"exp":-0}`, `{"exp":0.0000001}`,
		`{"exp":"1700000000"}`, `{"exp":"1.5"}`, `{"exp":" 1"}`, `{"nbf":null}`, `{"nbf":"x"}`, `{"nbf":[1]}`,
		`{"iat":1,"IAT":2}`, `{"aud":["a","b"]}`, `{"aud":["a",null]}`, `{"aud":["a\n"]}`, `{"aud":[]}`,
		`{"_claim_names":{}}`, `{"_claim_names":{"a":1}}`, `{"_claim_sources":{"s":5}}`,
		`{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
		`{"sub":"a\u0000"}`, "{\"sub\":\"a\x7f\"}", `{"sub":"a`, `{"sub"}`, `[{"iss":"a"}]`, `"iss"`, `null`, ``,
	)
	many := make([]string, maxClaimPairs+1)
	for i := range many {
		many[i] = fmt.Sprintf(`"c%d":%d`, i, i)
	}
	payloads = append(payloads, "{"+strings.Join(many, ",")+"}", "{"+strings.Join(many[:maxClaimPairs], ",")+"}")
	indexed := 0
	for _, p := range payloads {
		if checkClaimsIndex(t, []byte(p)) {
			indexed++
		}
	}
	if indexed < len(payloads)/2 {
		t.Fatalf("only %d of %d payloads were indexed: the comparison proves little", indexed, len(payloads))
	}
}

// TestClaimsIndexDeclines: what the index must leave to encoding/json, because decoding it field by
// field could differ from decoding the whole object.
func TestClaimsIndexDeclines(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		`{"iss":"a","iss":"b"}`,       // repeated: the typed decode merges, the map keeps the last
		`{"exp":1,"EXP":2}`,           // equal but for case: both fill one field
		`{"ſub":"a"}`,                 // non-ASCII: encoding/json folds it to "sub"
		`{"i\u0073s":"a"}`,            // escaped key
		`{"iss":"a\u0062"}`,           // escaped value
		`{"a":1} {"b":2}`,             // trailing data
		`[1]`, `null`, `{"a":1,}`, ``, // not one object
	} {
		if _, ok := indexClaims([]byte(p)); ok {
			t.Errorf("payload %q was indexed", p)
		}
	}
	if _, ok := indexClaims([]byte(`{"iss":"https://hub.example","sub":"a","exp":1,"kubernetes.io":{"pod":{"name":"p"}}}`)); !ok {
		t.Error("a plain payload was not indexed")
	}
}
