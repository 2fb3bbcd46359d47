package registry

import (
	"fmt"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// BenchmarkBuildEntry is the cost of turning one stored object with static keys into a routed entry,
// which a restart pays once per object.
func BenchmarkBuildEntry(b *testing.B) {
	key, err := testissuer.NewKey(jose.ES256)
	if err != nil {
		b.Fatal(err)
	}
	template := staticObject(b, "issuer", key)
	opts := authn.EntryOptions{Compiler: authn.NewCompiler()}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		obj := *template
		obj.Name = fmt.Sprintf("issuer-%d", i)
		cfg, err := ToConfig(&obj)
		if err != nil {
			b.Fatal(err)
		}
		e, err := authn.NewEntry(cfg, opts)
		if err != nil {
			b.Fatal(err)
		}
		e.Start()
		e.Close()
	}
}
