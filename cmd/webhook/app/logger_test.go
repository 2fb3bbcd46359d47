package app

import (
	"bytes"
	"strings"
	"testing"
)

func TestLoggerVerbosity(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := newLogger(&buf, 4, false)
	log.V(4).Info("per-review line")
	log.V(5).Info("too verbose")
	if !strings.Contains(buf.String(), "per-review line") || strings.Contains(buf.String(), "too verbose") {
		t.Fatalf("log = %q, want the V(4) line only", buf.String())
	}
}
