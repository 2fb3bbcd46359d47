package authn

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func seg(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestPeekIssuer(t *testing.T) {
	t.Parallel()
	hdr := seg(`{"alg":"RS256"}`)
	tests := []struct {
		name    string
		token   string
		want    string
		wantErr bool
	}{
		{name: "issuer", token: hdr + "." + seg(`{"iss":"https://a.example"}`) + ".sig", want: "https://a.example"},
		{name: "empty signature segment", token: hdr + "." + seg(`{"iss":"https://a"}`) + ".", want: "https://a"},
		{name: "empty", token: "", wantErr: true},
		{name: "one segment", token: "abc", wantErr: true},
		{name: "two segments", token: hdr + "." + seg(`{"iss":"x"}`), wantErr: true},
		{name: "JWE five segments", token: "a.b.c.d.e", wantErr: true},
		{name: "four segments", token: hdr + "." + seg(`{"iss":"x"}`) + ".s.t", wantErr: true},
		{name: "padded base64", token: hdr + "." + base64.URLEncoding.EncodeToString([]byte(`{"iss":"https://x"}`)) + "==.s", wantErr: true},
		{name: "not base64", token: hdr + ".!!!.sig", wantErr: true},
		{name: "not JSON", token: hdr + "." + seg("hello") + ".sig", wantErr: true},
		{name: "no iss", token: hdr + "." + seg(`{"sub":"x"}`) + ".sig", wantErr: true},
		{name: "iss not a string", token: hdr + "." + seg(`{"iss":42}`) + ".sig", wantErr: true},
		{name: "iss empty", token: hdr + "." + seg(`{"iss":""}`) + ".sig", wantErr: true},
		{name: "too long", token: hdr + "." + seg(`{"iss":"https://x","p":"`+strings.Repeat("a", MaxTokenBytesLimit)+`"}`) + ".sig", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := PeekIssuer(tt.token)
			if (err != nil) != tt.wantErr {
				t.Fatalf("PeekIssuer() error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("PeekIssuer() = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzPeekIssuer: the peek answers an issuer or an error, never both, and the same as encoding/json
// reads the token (peekIssuerReference, PeekIssuer before the claims index). The input also goes, as
// JSON, through the claims index and the kid peek, each against encoding/json, so the fuzzer explores
// JSON directly as well as inside base64; and through the fast path's compact JWS reader against
// go-jose, as a token and as a header signed with a P-256 key (checkCompactHeader).
func FuzzPeekIssuer(f *testing.F) {
	f.Add(seg(`{"alg":"RS256"}`) + "." + seg(`{"iss":"https://a.example"}`) + ".sig")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("")
	f.Add(`{"alg":"RS256","kid":"k1","typ":"JWT"}`)
	f.Add(`{"alg":"RS256","kid":"k1","KID":"k2"}`)
	f.Add(`{"alg":"ES256","kid":"e","typ":"JWT"}`)
	f.Add(`{"alg":"ES256","kid":"e","crit":["b64"],"b64":false}`)
	f.Add(`{"iss":"https://a.example","sub":"a","aud":["x"],"exp":1,"kubernetes.io":{"namespace":"n","pod":{"name":"p"}}}`)
	f.Fuzz(func(t *testing.T, token string) {
		iss, err := PeekIssuer(token)
		if err == nil && iss == "" {
			t.Fatal("no error but empty issuer")
		}
		if err != nil && iss != "" {
			t.Fatal("error with an issuer")
		}
		if wantIss, wantErr := peekIssuerReference(token); iss != wantIss || !errors.Is(err, wantErr) {
			t.Fatalf("PeekIssuer = %q, %v; encoding/json reads %q, %v", iss, err, wantIss, wantErr)
		}
		checkClaimsIndex(t, []byte(token))
		checkKID(t, []byte(token))
		// The fast path's reading of a compact JWS: of the input as a token, and as a header signed.
		checkCompactJWS(t, token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256}, testJWSKeys(t).public[:2])
		checkCompactHeader(t, token)
	})
}

// peekIssuerReference is PeekIssuer as it was before the claims index: encoding/json on the payload.
func peekIssuerReference(token string) (string, error) {
	if len(token) == 0 || len(token) > MaxTokenBytesLimit {
		return "", ErrMalformedToken
	}
	if !canonical(token) {
		return "", ErrNonCanonicalToken
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", ErrMalformedToken
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", ErrMalformedToken
	}
	var claims struct {
		Issuer *string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Issuer == nil || *claims.Issuer == "" {
		return "", ErrMalformedToken
	}
	if *claims.Issuer == legacyGoogleIssuer {
		return googleIssuer, nil
	}
	return *claims.Issuer, nil
}

// checkKID requires the kid the claims index finds in a header to be the one encoding/json's map finds.
func checkKID(tb testing.TB, header []byte) {
	tb.Helper()
	idx, ok := indexClaims(header)
	if !ok {
		return
	}
	kid, found := idx.kid()
	wantKID, wantFound := headerKID(header)
	if kid != wantKID || found != wantFound {
		tb.Errorf("header %q: kid %q (%v), encoding/json %q (%v)", header, kid, found, wantKID, wantFound)
	}
}

func TestPeekKIDMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, h := range []string{
		`{"alg":"RS256","kid":"k1"}`, `{"kid":""}`, `{"kid":null}`, `{"kid":5}`, `{"KID":"k"}`, `{"Kid":"k","alg":"x"}`,
		`{"kid":"k1","kid":"k2"}`, `{"kid":"k\u0031"}`, `{"kid":["k"]}`, `{"alg":"RS256"}`, `{}`, `[]`, `null`, `{"kid":"k"} x`,
	} {
		checkKID(t, []byte(h))
		tok := seg(h) + "." + seg(`{"iss":"https://a"}`) + ".sig"
		kid, ok := peekKID(tok)
		wantKID, wantOK := headerKID([]byte(h))
		if kid != wantKID || ok != wantOK {
			t.Errorf("header %s: peekKID %q (%v), encoding/json %q (%v)", h, kid, ok, wantKID, wantOK)
		}
	}
}
