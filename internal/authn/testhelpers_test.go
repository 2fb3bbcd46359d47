package authn

import (
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

const testAudience = "https://downstream.example:6443"

var sharedCompiler = NewCompiler()

func newIssuer(t *testing.T, alg jose.SignatureAlgorithm) *testissuer.Issuer {
	t.Helper()
	iss, err := testissuer.New(alg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	return iss
}

// baseConfig is an issuer entry configuration as the registry would default it for an object "hub".
func baseConfig(iss *testissuer.Issuer) Config {
	return Config{
		Name:                 "hub",
		UID:                  "uid-hub",
		CreatedAt:            time.Unix(1000, 0),
		Issuer:               iss.URL,
		Audiences:            []string{testAudience},
		CABundle:             iss.CAPEM(),
		UsernameClaim:        "sub",
		UsernamePrefix:       "hub:",
		GroupsPrefix:         "hub:",
		ServiceAccountGroups: true,
		MinRefetchInterval:   time.Hour, // tests that need refetches lower it
	}
}

// startEntry builds and starts an entry and waits for its first key load.
func startEntry(t *testing.T, cfg Config) *Entry {
	t.Helper()
	e, err := NewEntry(cfg, EntryOptions{Compiler: sharedCompiler, Log: logr.Discard()})
	if err != nil {
		t.Fatalf("NewEntry() error = %v", err)
	}
	e.Start()
	t.Cleanup(e.Close)
	waitFor(t, func() bool { return e.KeyStatus().Attempted })
	return e
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mint(t *testing.T, iss *testissuer.Issuer, claims testissuer.Claims) string {
	t.Helper()
	tok, err := iss.Mint(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
