package registry

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/go-jose/go-jose/v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
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
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Private.Public(), KeyID: key.KID, Use: "sig"}}})
	opts := authn.EntryOptions{Compiler: authn.NewCompiler()}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		obj := &v1alpha1.OpenIDConnect{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("issuer-%d", i)},
			Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: fmt.Sprintf("https://issuer-%d.example", i), Audiences: []string{"https://downstream"}, JWKS: &v1alpha1.JWKSSpec{Keys: jwks}},
		}
		cfg, err := ToConfig(obj)
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
