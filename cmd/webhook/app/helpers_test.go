package app

import (
	"net"
	"os"
	"testing"

	"github.com/clustertrust/clustertrust/internal/pki"
)

func writeSelfSigned(t *testing.T, dir string) (cert, key string) {
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
	return cert, key
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
