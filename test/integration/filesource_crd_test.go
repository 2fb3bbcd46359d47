//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/registry"
)

// fileCRDCase is one entry of internal/registry/testdata/crd/{invalid,valid}.yaml, the table the file
// source's unit test reads too.
type fileCRDCase struct {
	Name   string         `json:"name"`
	Want   string         `json:"want"`
	Object map[string]any `json:"object"`
}

func loadFileCRDCases(t *testing.T, file string) []fileCRDCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "internal", "registry", "testdata", "crd", file))
	if err != nil {
		t.Fatal(err)
	}
	var cases []fileCRDCase
	if err := yaml.UnmarshalStrict(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatalf("no cases in %s", file)
	}
	return cases
}

// fileAndAPIServer hands the same manifest to the file source's parser and, as a dry-run create with
// kubectl's strict field validation, to the API server.
func fileAndAPIServer(t *testing.T, manifest []byte) (objs []*v1alpha1.OpenIDConnect, fileErr error, created *unstructured.Unstructured, apiErr error) {
	t.Helper()
	objs, fileErr = registry.ParseManifests(manifest)
	created = &unstructured.Unstructured{}
	if err := utiljson.Unmarshal(manifest, &created.Object); err != nil {
		t.Fatal(err)
	}
	apiErr = adminClient.Create(context.Background(), created, client.DryRunAll, client.FieldValidation("Strict"))
	return objs, fileErr, created, apiErr
}

func caseManifest(t *testing.T, object map[string]any) []byte {
	t.Helper()
	obj := maps.Clone(object)
	obj["apiVersion"], obj["kind"] = v1alpha1.GroupVersion.String(), "OpenIDConnect"
	manifest, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return manifest
}

// TestFileSourceMatchesAPIServer: objects from files and from the API pass one set of rules. Every
// object the CRD refuses is refused by both the API server and the file source with the same error,
// message for message; every object it accepts is accepted by both, with the same defaults applied.
func TestFileSourceMatchesAPIServer(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		for _, tc := range loadFileCRDCases(t, "invalid.yaml") {
			t.Run(tc.Name, func(t *testing.T) {
				_, fileErr, _, apiErr := fileAndAPIServer(t, caseManifest(t, tc.Object))
				if apiErr == nil || fileErr == nil {
					t.Fatalf("API server error: %v\nfile source error: %v\nwant both to refuse", apiErr, fileErr)
				}
				var fileStatus *apierrors.StatusError
				if !errors.As(fileErr, &fileStatus) {
					t.Fatalf("file source error %q carries no API status", fileErr)
				}
				if fileStatus.Error() != apiErr.Error() {
					t.Fatalf("messages differ:\nAPI server:  %s\nfile source: %s", apiErr, fileStatus)
				}
				want, got := apierrors.APIStatus(nil), apierrors.APIStatus(fileStatus)
				if !errors.As(apiErr, &want) {
					t.Fatalf("API server error %v carries no status", apiErr)
				}
				if w, g := want.Status(), got.Status(); w.Reason != g.Reason || w.Code != g.Code || !equality.Semantic.DeepEqual(w.Details, g.Details) {
					t.Fatalf("statuses differ:\nAPI server:  %s %d %+v\nfile source: %s %d %+v", w.Reason, w.Code, w.Details, g.Reason, g.Code, g.Details)
				}
				if apierrors.IsInvalid(apiErr) && fileErr.Error() != apiErr.Error() {
					t.Fatalf("the file source wraps the API server's message: %s", fileErr)
				}
				if !strings.Contains(apiErr.Error(), tc.Want) {
					t.Fatalf("API server error %q does not contain the table's %q", apiErr, tc.Want)
				}
			})
		}
	})

	t.Run("accepted", func(t *testing.T) {
		manifests := map[string][]byte{}
		for _, tc := range loadFileCRDCases(t, "valid.yaml") {
			manifests[tc.Name] = caseManifest(t, tc.Object)
		}
		samples, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "*.yaml"))
		if err != nil || len(samples) == 0 {
			t.Fatalf("no samples: %v", err)
		}
		for _, sample := range samples {
			data, err := os.ReadFile(sample)
			if err != nil {
				t.Fatal(err)
			}
			if manifests[filepath.Base(sample)], err = yaml.YAMLToJSON(data); err != nil {
				t.Fatal(err)
			}
		}
		for name, manifest := range manifests {
			t.Run(name, func(t *testing.T) {
				objs, fileErr, created, apiErr := fileAndAPIServer(t, manifest)
				if apiErr != nil || fileErr != nil {
					t.Fatalf("API server error: %v\nfile source error: %v\nwant both to accept", apiErr, fileErr)
				}
				var stored v1alpha1.OpenIDConnect
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(created.Object, &stored); err != nil {
					t.Fatal(err)
				}
				if len(objs) != 1 || !equality.Semantic.DeepEqual(objs[0].Spec, stored.Spec) {
					t.Fatalf("specs differ:\nAPI server:  %+v\nfile source: %+v", stored.Spec, objs[0].Spec)
				}
				if !equality.Semantic.DeepEqual(objs[0].Status, stored.Status) || !equality.Semantic.DeepEqual(objs[0].Labels, stored.Labels) {
					t.Fatalf("status or labels differ:\nAPI server:  %+v %v\nfile source: %+v %v", stored.Status, stored.Labels, objs[0].Status, objs[0].Labels)
				}
			})
		}
	})
}
