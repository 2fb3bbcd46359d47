package authn

import (
	"encoding/base64"
	"strings"
	"testing"
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

func FuzzPeekIssuer(f *testing.F) {
	f.Add(seg(`{"alg":"RS256"}`) + "." + seg(`{"iss":"https://a.example"}`) + ".sig")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		iss, err := PeekIssuer(token)
		if err == nil && iss == "" {
			t.Fatal("no error but empty issuer")
		}
		if err != nil && iss != "" {
			t.Fatal("error with an issuer")
		}
	})
}
