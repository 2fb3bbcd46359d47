package convert

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
)

// Manifest returns obj as a manifest holds it: apiVersion, kind, metadata.name and spec, without
// status or what the API server fills in.
func Manifest(obj *v1alpha1.OpenIDConnect) (map[string]any, error) {
	js, err := json.Marshal(obj.Spec)
	if err != nil {
		return nil, err
	}
	var spec map[string]any
	if err := json.Unmarshal(js, &spec); err != nil {
		return nil, err
	}
	return map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "OpenIDConnect",
		"metadata":   map[string]any{"name": obj.Name},
		"spec":       spec,
	}, nil
}

// MarshalManifests writes objs as YAML documents separated by "---", each with apiVersion, kind,
// metadata.name and spec, the spec's fields in the API's order.
func MarshalManifests(objs []v1alpha1.OpenIDConnect) ([]byte, error) {
	type manifest struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec v1alpha1.OpenIDConnectSpec `json:"spec"`
	}
	var out bytes.Buffer
	for i := range objs {
		m := manifest{APIVersion: v1alpha1.GroupVersion.String(), Kind: "OpenIDConnect", Spec: objs[i].Spec}
		m.Metadata.Name = objs[i].Name
		y, err := marshalYAML(m)
		if err != nil {
			return nil, fmt.Errorf("could not encode OpenIDConnect %q: %w", objs[i].Name, err)
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(y)
	}
	return out.Bytes(), nil
}
