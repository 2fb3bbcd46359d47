package registry

import "github.com/go-logr/logr"

// withLazyValues returns log with keysAndValues added to each line it writes, without adding them to
// log itself. zapr's WithValues encodes the values at once into a buffer the new logger keeps (about
// 1.3 KB), and the registry gives every entry a logger naming its object: with 10,000 objects that was
// 13 MB of heap for lines that are rarely written.
func withLazyValues(log logr.Logger, keysAndValues ...any) logr.Logger {
	sink := log.GetSink()
	if sink == nil {
		return log
	}
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		sink = cd.WithCallDepth(1) // for the frame lazySink adds
	}
	return log.WithSink(lazySink{sink: sink, kv: keysAndValues})
}

type lazySink struct {
	sink logr.LogSink
	kv   []any
}

func (l lazySink) Init(info logr.RuntimeInfo) { l.sink.Init(info) }
func (l lazySink) Enabled(level int) bool     { return l.sink.Enabled(level) }

func (l lazySink) Info(level int, msg string, keysAndValues ...any) {
	l.sink.Info(level, msg, append(l.kv[:len(l.kv):len(l.kv)], keysAndValues...)...)
}

func (l lazySink) Error(err error, msg string, keysAndValues ...any) {
	l.sink.Error(err, msg, append(l.kv[:len(l.kv):len(l.kv)], keysAndValues...)...)
}

func (l lazySink) WithValues(keysAndValues ...any) logr.LogSink {
	return lazySink{sink: l.sink, kv: append(l.kv[:len(l.kv):len(l.kv)], keysAndValues...)}
}

func (l lazySink) WithName(name string) logr.LogSink {
	return lazySink{sink: l.sink.WithName(name), kv: l.kv}
}

// WithCallDepth and GetCallStackHelper pass through, so logr.Logger.WithCallDepth and WithCallStackHelper
// work as they do on the wrapped sink.
func (l lazySink) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := l.sink.(logr.CallDepthLogSink); ok {
		return lazySink{sink: cd.WithCallDepth(depth), kv: l.kv}
	}
	return l
}

func (l lazySink) GetCallStackHelper() func() {
	if h, ok := l.sink.(logr.CallStackHelperLogSink); ok {
		return h.GetCallStackHelper()
	}
	return func() {}
}
