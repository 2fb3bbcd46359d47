package app

import (
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/clustertrust/clustertrust/internal/authn"
)

// TestServeFlagDefaultsAreAuthnDefaults pins the flags whose defaults authn also applies when a field
// is left zero: a literal in NewServeOptions that differs from authn's constant would make the binary
// and the library disagree about the same limit.
func TestServeFlagDefaultsAreAuthnDefaults(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	NewServeOptions().AddFlags(fs)
	for _, tt := range []struct {
		flag string
		want string
	}{
		{flag: "max-token-bytes", want: strconv.Itoa(authn.MaxTokenBytes)},
		{flag: "key-refresh-interval", want: authn.DefaultRefreshInterval.String()},
		{flag: "min-refetch-interval", want: authn.DefaultMinRefetchInterval.String()},
		{flag: "cache-max-entries", want: strconv.Itoa(authn.DefaultCacheMaxEntries)},
		{flag: "cache-max-bytes", want: strconv.Itoa(authn.DefaultCacheMaxBytes)},
	} {
		f := fs.Lookup(tt.flag)
		if f == nil {
			t.Errorf("--%s is not registered", tt.flag)
			continue
		}
		if f.DefValue != tt.want {
			t.Errorf("--%s defaults to %s, authn's default is %s", tt.flag, f.DefValue, tt.want)
		}
	}
	if usage := fs.Lookup("max-token-bytes").Usage; !strings.Contains(usage, strconv.Itoa(authn.MaxTokenBytesLimit)) {
		t.Errorf("--max-token-bytes usage %q does not name authn.MaxTokenBytesLimit (%d)", usage, authn.MaxTokenBytesLimit)
	}
}

// TestMaxTokenBytesBoundIsAuthnLimit pins Validate's upper bound to the most PeekIssuer decodes: a
// larger flag value would let the handler accept tokens the router then refuses as malformed.
func TestMaxTokenBytesBoundIsAuthnLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		value int
		ok    bool
	}{
		{value: minMaxTokenBytes - 1, ok: false},
		{value: minMaxTokenBytes, ok: true},
		{value: authn.MaxTokenBytes, ok: true},
		{value: authn.MaxTokenBytesLimit, ok: true},
		{value: authn.MaxTokenBytesLimit + 1, ok: false},
	} {
		o := NewServeOptions()
		o.TLSCertFile, o.TLSKeyFile = "c", "k"
		o.MaxTokenBytes = tt.value
		var bad []string
		for _, err := range o.Validate() {
			if strings.Contains(err.Error(), "--max-token-bytes") {
				bad = append(bad, err.Error())
			}
		}
		if ok := len(bad) == 0; ok != tt.ok {
			t.Errorf("--max-token-bytes %d: accepted = %t, want %t (errors %q)", tt.value, ok, tt.ok, bad)
		}
	}
}
