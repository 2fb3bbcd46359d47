package convert_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/apis/apiserver/install"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/convert"
	"github.com/clustertrust/clustertrust/internal/registry"
)

// testCodecs decode an AuthenticationConfiguration as kube-apiserver does, independently of the
// package under test.
var testCodecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	install.Install(s)
	return serializer.NewCodecFactory(s, serializer.EnableStrict)
}()

func decodeConfig(t *testing.T, data []byte) *apiserver.AuthenticationConfiguration {
	t.Helper()
	obj, err := runtime.Decode(testCodecs.UniversalDecoder(), data)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	cfg, ok := obj.(*apiserver.AuthenticationConfiguration)
	if !ok {
		t.Fatalf("decoded a %T", obj)
	}
	return cfg
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// admit passes objs through the OpenIDConnect CRD as the API server or the file source would: its
// defaults applied, its rules checked.
func admit(t *testing.T, objs []v1alpha1.OpenIDConnect) []v1alpha1.OpenIDConnect {
	t.Helper()
	data, err := convert.MarshalManifests(objs)
	if err != nil {
		t.Fatal(err)
	}
	admitted, err := registry.ParseManifests(data)
	if err != nil {
		t.Fatalf("the CRD refuses the objects: %v\n%s", err, data)
	}
	out := make([]v1alpha1.OpenIDConnect, 0, len(admitted))
	for _, o := range admitted {
		out = append(out, *o)
	}
	return out
}

// noteKeys returns each note as "index field", sorted, for comparing which notes were given.
func noteKeys(notes []convert.Note) []string {
	var out []string
	for _, n := range notes {
		out = append(out, fmt.Sprintf("%d %s", n.Index, n.Field))
	}
	slices.Sort(out)
	return out
}

// unsetLeaves lists the leaf fields of type T (dotted Go field paths, slices and pointers looked
// through) that are zero in every one of values: a test table that claims to cover "every field"
// proves it with an empty list, and fails when a Kubernetes bump adds a field.
func unsetLeaves[T any](values []T) []string {
	set := map[string]bool{}
	for _, v := range values {
		markSet(reflect.ValueOf(v), "", set)
	}
	var all []string
	leafPaths(reflect.TypeFor[T](), "", &all)
	var out []string
	for _, p := range all {
		if !set[p] {
			out = append(out, p)
		}
	}
	return out
}

func isLeaf(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct:
		return false
	case reflect.Pointer, reflect.Slice:
		e := t.Elem()
		if e.Kind() == reflect.Pointer {
			e = e.Elem()
		}
		return e.Kind() != reflect.Struct
	}
	return true
}

func leafPaths(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || f.Anonymous {
			continue
		}
		p := strings.TrimPrefix(prefix+"."+f.Name, ".")
		if isLeaf(f.Type) {
			*out = append(*out, p)
			continue
		}
		leafPaths(f.Type, p, out)
	}
}

func markSet(v reflect.Value, prefix string, set map[string]bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			markSet(v.Elem(), prefix, set)
		}
	case reflect.Slice:
		for i := range v.Len() {
			markSet(v.Index(i), prefix, set)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() || f.Anonymous {
				continue
			}
			p := strings.TrimPrefix(prefix+"."+f.Name, ".")
			if isLeaf(f.Type) {
				if !v.Field(i).IsZero() {
					set[p] = true
				}
				continue
			}
			markSet(v.Field(i), p, set)
		}
	}
}

// diff shows two values as YAML side by side, for a failure message.
func diff(got, want any) string {
	g, _ := yaml.Marshal(got)
	w, _ := yaml.Marshal(want)
	return fmt.Sprintf("got:\n%s\nwant:\n%s", g, w)
}

func objectMeta(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }
