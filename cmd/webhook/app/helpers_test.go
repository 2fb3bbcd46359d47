package app

import (
	"net"
	"os"
	"testing"

	"github.com/clustertrust/clustertrust/internal/pki"
)

func writeSelfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	cert, key, _ = writeServing(t, dir)
	return cert, key
}

// writeServing writes a serving certificate for 127.0.0.1 and returns its files and CA.
func writeServing(t *testing.T, dir string) (cert, key string, ca *pki.CA) {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Serving("test", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err = pair.Write(dir, "serving")
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, ca
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
