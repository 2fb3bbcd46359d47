package app

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/convert"
	"github.com/clustertrust/clustertrust/internal/registry"
)

// authenticationConfigFormat is the one format convert speaks besides OpenIDConnect manifests.
const authenticationConfigFormat = "authentication-config"

// maxConvertInputBytes bounds what convert reads: an AuthenticationConfiguration holds at most 64
// authenticators, and a list of OpenIDConnects with CA bundles and static keys is a few MiB at most.
const maxConvertInputBytes = 8 << 20

// convertOptions are the flags of `webhook convert`.
type convertOptions struct {
	from, to   string
	filename   string
	output     string
	namePrefix string
}

func (o *convertOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.from, "from", "", "Convert from this format into OpenIDConnect manifests: "+authenticationConfigFormat+".")
	fs.StringVar(&o.to, "to", "", "Convert OpenIDConnect manifests (documents, or a List) into this format: "+authenticationConfigFormat+".")
	fs.StringVarP(&o.filename, "filename", "f", "", "The file to convert; - reads stdin.")
	fs.StringVar(&o.output, "output", "", "Write the result to this file instead of stdout.")
	fs.StringVar(&o.namePrefix, "name-prefix", "", "With --from: prepend this to every object name (names are derived from the issuer URLs).")
}

// Validate checks the flags without I/O and returns every problem.
func (o *convertOptions) Validate() []error {
	var errs []error
	switch {
	case (o.from == "") == (o.to == ""):
		errs = append(errs, fmt.Errorf("give exactly one of --from %s and --to %s", authenticationConfigFormat, authenticationConfigFormat))
	case o.from != "" && o.from != authenticationConfigFormat:
		errs = append(errs, fmt.Errorf("--from %q is not a format convert knows; use --from %s", o.from, authenticationConfigFormat))
	case o.to != "" && o.to != authenticationConfigFormat:
		errs = append(errs, fmt.Errorf("--to %q is not a format convert knows; use --to %s", o.to, authenticationConfigFormat))
	}
	if o.filename == "" {
		errs = append(errs, errors.New("--filename (-f) is required: a file, or - for stdin"))
	}
	if o.namePrefix != "" && o.from == "" {
		errs = append(errs, errors.New("--name-prefix goes with --from"))
	}
	return errs
}

func newConvertCommand() *cobra.Command {
	o := &convertOptions{}
	cmd := &cobra.Command{
		Use:   "convert",
		Short: "Convert kube-apiserver's AuthenticationConfiguration into OpenIDConnect objects, and back",
		Long: `convert translates the jwt authenticators of a kube-apiserver AuthenticationConfiguration
(apiserver.config.k8s.io v1, v1beta1 or v1alpha1; the file of --authentication-config) into OpenIDConnect
objects, one per authenticator and named after its issuer, or OpenIDConnect objects into an
AuthenticationConfiguration, field by field.

What has no counterpart on the other side (an egress selector, static keys, a lifetime bound, ...) is
reported on stderr as a note naming the authenticator, the field and the reason; notes are not errors.
The input must be one kube-apiserver accepts, and the output is checked before anything is written: the
objects against the OpenIDConnect CRD, the AuthenticationConfiguration with kube-apiserver's own
validation. Output goes to stdout (or --output); a failure writes nothing and exits 1.

webhook serve --source=file reads an AuthenticationConfiguration itself; convert shows what it makes of one.`,
		Example: `  # The objects equivalent to kube-apiserver's structured authentication configuration:
  webhook convert --from authentication-config -f /etc/kubernetes/authentication-config.yaml | kubectl apply -f -

  # kube-apiserver's configuration for the objects of a cluster:
  kubectl get oidc -o yaml | webhook convert --to authentication-config -f - --output authentication-config.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if errs := o.Validate(); len(errs) > 0 {
				return oneLine(errors.Join(errs...))
			}
			return oneLine(o.Run(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// Run reads the input, converts it and, only when all of it converted, writes the result and the notes.
func (o *convertOptions) Run(stdin io.Reader, stdout, stderr io.Writer) error {
	data, err := o.read(stdin)
	if err != nil {
		return err
	}
	var out []byte
	var notes []convert.Note
	if o.from != "" {
		out, notes, err = o.fromAuthenticationConfig(data)
	} else {
		out, notes, err = toAuthenticationConfig(data)
	}
	if err != nil {
		return err
	}
	if o.output == "" {
		if _, err := stdout.Write(out); err != nil {
			return err
		}
	} else if err := os.WriteFile(o.output, out, 0o600); err != nil {
		return fmt.Errorf("could not write --output: %w", err)
	}
	for _, n := range notes {
		_, _ = fmt.Fprintln(stderr, "note: "+n.String())
	}
	return nil
}

func (o *convertOptions) read(stdin io.Reader) ([]byte, error) {
	name := o.filename
	r := stdin
	if name != "-" {
		f, err := os.Open(name) //nolint:gosec // G304: the file the operator named
		if err != nil {
			return nil, fmt.Errorf("could not read --filename: %w", err)
		}
		defer func() { _ = f.Close() }()
		r = f
	} else {
		name = "stdin"
	}
	data, err := io.ReadAll(io.LimitReader(r, maxConvertInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("could not read %s: %w", name, err)
	}
	if len(data) > maxConvertInputBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxConvertInputBytes)
	}
	return data, nil
}

// fromAuthenticationConfig converts an AuthenticationConfiguration and admits each object as the API
// server would, so what is printed applies.
func (o *convertOptions) fromAuthenticationConfig(data []byte) ([]byte, []convert.Note, error) {
	objs, notes, err := convert.Options{NamePrefix: o.namePrefix}.FromAuthenticationConfiguration(data)
	if err != nil {
		return nil, nil, err
	}
	for i := range objs {
		one, err := convert.MarshalManifests(objs[i : i+1])
		if err == nil {
			_, err = registry.ParseManifests(one)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("jwt[%d] (%s) converts to an object clustertrust refuses: %w", i, objs[i].Spec.IssuerURL, err)
		}
	}
	out, err := convert.MarshalManifests(objs)
	return out, notes, err
}

// toAuthenticationConfig reads OpenIDConnect manifests (several documents, or a List such as `kubectl
// get oidc -o yaml` prints), admits them as the API server would (defaults applied, the CRD's rules
// checked; what the server fills in and status are ignored) and converts them.
func toAuthenticationConfig(data []byte) ([]byte, []convert.Note, error) {
	var manifests bytes.Buffer
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", doc, err)
		}
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue // empty, or only comments
		}
		u := &unstructured.Unstructured{}
		if err := utiljson.Unmarshal(js, &u.Object); err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", doc, err)
		}
		items := []unstructured.Unstructured{*u}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, nil, fmt.Errorf("document %d: %w", doc, err)
			}
			items = list.Items
		}
		for _, item := range items {
			if item.GetAPIVersion() != v1alpha1.GroupVersion.String() || item.GetKind() != "OpenIDConnect" {
				return nil, nil, fmt.Errorf("document %d: holds %s %s, want %s OpenIDConnect manifests (or a List of them)", doc, item.GetAPIVersion(), item.GetKind(), v1alpha1.GroupVersion)
			}
			if item.GetName() == "" {
				return nil, nil, fmt.Errorf("document %d: an OpenIDConnect without metadata.name", doc)
			}
			// Only what a create would send: a stored object's resourceVersion, uid, managedFields and
			// status are no part of the configuration.
			spec, _, _ := unstructured.NestedFieldNoCopy(item.Object, "spec")
			m, err := yaml.Marshal(map[string]any{"apiVersion": item.GetAPIVersion(), "kind": item.GetKind(), "metadata": map[string]any{"name": item.GetName()}, "spec": spec})
			if err != nil {
				return nil, nil, fmt.Errorf("document %d: %w", doc, err)
			}
			manifests.WriteString("---\n")
			manifests.Write(m)
		}
	}
	objs, err := registry.ParseManifests(manifests.Bytes())
	if err != nil {
		return nil, nil, err
	}
	list := make([]v1alpha1.OpenIDConnect, 0, len(objs))
	for _, obj := range objs {
		list = append(list, *obj)
	}
	return convert.ToAuthenticationConfiguration(list)
}

// oneLine joins the lines of err (a CEL compile error spans several), so a failure is reported on one.
func oneLine(err error) error {
	if err == nil || !strings.Contains(err.Error(), "\n") {
		return err
	}
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}
