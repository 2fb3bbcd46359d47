package registry

import (
	"bytes"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestLazyValuesWriteTheSameLines: a logger with lazy values writes what WithValues would, caller
// included.
func TestLazyValuesWriteTheSameLines(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = ""
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(&buf), zapcore.DebugLevel)
	base := zapr.NewLogger(zap.New(core, zap.AddCaller()))

	write := func(log logr.Logger) string {
		buf.Reset()
		log.WithName("keys").V(1).Info("Keys refreshed", "keys", 2) // the caller both lines must name
		return buf.String()
	}
	eager := write(base.WithValues("openidconnect", "hub"))
	lazy := write(withLazyValues(base, "openidconnect", "hub"))
	if eager != lazy || !strings.Contains(lazy, "lazylog_test.go") {
		t.Fatalf("lazy values wrote\n%s\nwant\n%s", lazy, eager)
	}
	// A helper that logs for its caller names the caller, through either logger.
	helper := func(log logr.Logger) { log.WithCallDepth(1).Info("Keys refreshed") }
	viaHelper := func(log logr.Logger) string {
		buf.Reset()
		helper(log) // the caller both lines must name
		return buf.String()
	}
	if eager, lazy := viaHelper(base.WithValues("openidconnect", "hub")), viaHelper(withLazyValues(base, "openidconnect", "hub")); eager != lazy {
		t.Fatalf("with a call depth, lazy values wrote\n%s\nwant\n%s", lazy, eager)
	}
}
