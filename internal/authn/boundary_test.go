package authn

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundary keeps the request path free of the control loop's dependencies (see DESIGN.md,
// "Layout"): internal/authn imports neither controller-runtime, client-go nor the API types, and nothing
// it pulls in reaches controller-runtime or this module's control-loop packages. (k8s.io/apiserver's
// authenticator itself uses a few client-go utility packages; that is allowed.)
func TestImportBoundary(t *testing.T) {
	t.Parallel()
	check := func(listFormat string, forbidden []string) {
		out, err := exec.Command("go", "list", "-f", listFormat, ".").CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("internal/authn depends on %s", dep)
				}
			}
		}
	}
	controlLoop := []string{
		"sigs.k8s.io/controller-runtime",
		"github.com/clustertrust/clustertrust/api/",
		"github.com/clustertrust/clustertrust/internal/registry",
		"github.com/clustertrust/clustertrust/cmd/",
	}
	check(`{{join .Imports " "}}`, append(controlLoop, "k8s.io/client-go"))
	check(`{{join .Deps " "}}`, controlLoop)
}
