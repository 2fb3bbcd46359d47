package app

import (
	"net"
	"os"
	"strings"
	"sync"
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

// syncWriter lets the test read what a running server logs.
type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
