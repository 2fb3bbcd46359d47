package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/registry"
)

// errNotAuthenticated makes `webhook explain` exit 1 after printing why.
var errNotAuthenticated = errors.New("the token would not be authenticated")

// explainReport is what `webhook explain` prints: the request path's explanation, and what it knows of
// the objects the router did not try.
type explainReport struct {
	authn.Explanation
	// Objects lists every object read, and whether the router would try it for this token.
	Objects []explainedObject `json:"objects"`
	// Note says where the keys came from.
	Note string `json:"note"`
}

type explainedObject struct {
	Name   string `json:"name"`
	Issuer string `json:"issuer"`
	// Considered is true when the object's issuer is the token's; else Why says why not.
	Considered bool   `json:"considered"`
	Why        string `json:"why,omitempty"`
}

func newExplainCommand() *cobra.Command {
	var (
		tokenFile, kubeconfig, configDir, output string
		audiences                                []string
		timeout                                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Say step by step whether the webhook would authenticate a token, and why not",
		Long: `explain reads a token from a file or stdin (never from a flag, so it stays out of shell history), the
OpenIDConnect objects from the cluster of --kubeconfig or from --config-dir, and each issuer's keys the
way the webhook gets them, from where explain runs. It then runs the webhook's own request path on the
token and prints the token's unverified claims, the objects the router tries and in which order, the
first check each one failed with its reason, and a hint that names the fix.

It exits 0 when the token would be authenticated and 1 when not. Nothing of the token is printed but
its claims, which its holder can read anyway.`,
		Example: `  kubectl --context upstream -n tenant-a create token reconciler --audience https://downstream:6443 \
    | webhook explain --kubeconfig downstream.kubeconfig
  webhook explain --token-file token.jwt --config-dir /etc/kubernetes/clustertrust/issuers --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q is neither text nor json", output)
			}
			if kubeconfig != "" && configDir != "" {
				return errors.New("give --kubeconfig or --config-dir, not both")
			}
			token, err := readToken(cmd.InOrStdin(), tokenFile)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			objs, err := readObjects(ctx, kubeconfig, configDir)
			if err != nil {
				return err
			}
			report, err := explain(ctx, objs, token, audiences)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else {
				printExplanation(cmd.OutOrStdout(), report)
			}
			if !report.Authenticated {
				return errNotAuthenticated
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&tokenFile, "token-file", "-", "File holding the token; - reads stdin.")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Kubeconfig of the cluster holding the OpenIDConnect objects (default: in-cluster config, then $KUBECONFIG).")
	fs.StringVar(&configDir, "config-dir", "", "Read the OpenIDConnect objects from this directory of manifests instead, as --source=file does.")
	fs.StringSliceVar(&audiences, "audience", nil, "Audiences kube-apiserver asks for in the TokenReview (spec.audiences); usually none.")
	fs.StringVar(&output, "output", "text", "text or json.")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "How long to wait for the objects and the issuers' keys.")
	return cmd
}

// readToken reads the token from path (stdin for -), dropping the line break a file or `kubectl create
// token` ends with.
func readToken(stdin io.Reader, path string) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, authn.MaxTokenBytesLimit+2))
	} else {
		b, err = os.ReadFile(path) //nolint:gosec // G304: the file the user named
	}
	if err != nil {
		return "", fmt.Errorf("could not read the token: %w", err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}

// readObjects lists the OpenIDConnect objects of the cluster, or parses those of a directory.
func readObjects(ctx context.Context, kubeconfig, configDir string) ([]v1alpha1.OpenIDConnect, error) {
	if configDir != "" {
		return readObjectsDir(configDir)
	}
	cfg, err := loadRESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("could not create an API client: %w", err)
	}
	var list v1alpha1.OpenIDConnectList
	if err := c.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("could not list OpenIDConnect objects at %s: %w", cfg.Host, err)
	}
	return list.Items, nil
}

func readObjectsDir(dir string) ([]v1alpha1.OpenIDConnect, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("--config-dir: %w", err)
	}
	var objs []v1alpha1.OpenIDConnect
	for _, de := range entries {
		name := de.Name()
		ext := filepath.Ext(name)
		if de.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name)) //nolint:gosec // G304: the directory the user named
		if err != nil {
			return nil, err
		}
		parsed, err := registry.ParseManifests(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, o := range parsed {
			objs = append(objs, *o)
		}
	}
	return objs, nil
}

// explain routes the objects as the webhook does (same translation, same entries, same router), waits
// for each issuer's first key load, and explains the token.
func explain(ctx context.Context, objs []v1alpha1.OpenIDConnect, token string, audiences []string) (*explainReport, error) {
	router := authn.NewRouter()
	compiler := authn.NewCompiler()
	report := &explainReport{Note: "the keys were fetched from where explain runs; the webhook fetches them from where it runs"}
	iss, _ := authn.PeekIssuer(token) // "" for a token without one
	var entries []*authn.Entry
	sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
	for i := range objs {
		obj := &objs[i]
		o := explainedObject{Name: obj.Name, Issuer: obj.Spec.IssuerURL}
		cfg, err := registry.ToConfig(obj)
		if err == nil {
			var e *authn.Entry
			if e, err = authn.NewEntry(cfg, authn.EntryOptions{Compiler: compiler, Log: logr.Discard()}); err == nil {
				e.Start()
				entries = append(entries, e)
				router.Store(obj.Name, e)
			}
		}
		switch {
		case err != nil:
			o.Why = "invalid, so the webhook does not route it: " + err.Error()
		case iss == "":
			o.Why = "the token names no issuer"
		case obj.Spec.IssuerURL != iss:
			o.Why = fmt.Sprintf("its issuer is %s, the token's is %s", obj.Spec.IssuerURL, iss)
		default:
			o.Considered = true
		}
		report.Objects = append(report.Objects, o)
	}
	defer func() {
		for _, e := range entries {
			e.Close()
		}
	}()
	// Wait for the first key load of the issuers the token could be checked against, as a webhook
	// replica does before it is ready.
	for _, e := range entries {
		if e.Config().Issuer != iss {
			continue
		}
		for !e.KeyStatus().Attempted {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("the keys of %s did not load within --timeout", e.Config().Name)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	report.Explanation = router.Explain(ctx, token, audiences, 0)
	return report, nil
}

func printExplanation(w io.Writer, r *explainReport) {
	var b bytes.Buffer
	c := r.Claims
	b.WriteString("The token says (unverified):\n")
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(&b, "  %-4s %s\n", name, value)
		}
	}
	field("iss", c.Issuer)
	field("sub", c.Subject)
	if len(c.Audiences) > 0 {
		field("aud", strings.Join(c.Audiences, ", "))
	}
	when := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		d := time.Until(*t).Round(time.Second)
		rel := "in " + d.String()
		if d < 0 {
			rel = (-d).String() + " ago"
		}
		return t.UTC().Format(time.RFC3339) + " (" + rel + ")"
	}
	field("exp", when(c.Expiry))
	field("nbf", when(c.NotBefore))
	field("iat", when(c.IssuedAt))
	field("kid", c.KeyID)
	field("alg", c.Algorithm)

	b.WriteString("\nObjects:\n")
	if len(r.Objects) == 0 {
		b.WriteString("  none: nothing is trusted yet\n")
	}
	for _, o := range r.Objects {
		if o.Considered {
			fmt.Fprintf(&b, "  %-20s considered: its issuer is the token's\n", o.Name)
		} else {
			fmt.Fprintf(&b, "  %-20s not considered: %s\n", o.Name, o.Why)
		}
	}
	if len(r.Attempts) > 0 {
		b.WriteString("\nChecks, in the router's order:\n")
		for i, a := range r.Attempts {
			switch {
			case a.Skipped != "":
				fmt.Fprintf(&b, "  %d. %s: not tried: %s\n", i+1, a.Object, a.Skipped)
			case a.Authenticated:
				fmt.Fprintf(&b, "  %d. %s: authenticated\n", i+1, a.Object)
			default:
				fmt.Fprintf(&b, "  %d. %s: refused: %s\n     %s\n", i+1, a.Object, a.Reason, a.Detail)
				if a.Hint != "" {
					fmt.Fprintf(&b, "     fix: %s\n", a.Hint)
				}
			}
		}
	}
	b.WriteString("\n")
	if r.Authenticated {
		u := r.User
		fmt.Fprintf(&b, "Authenticated by %s as %s\n", u.Object, u.Username)
		if len(u.Groups) > 0 {
			fmt.Fprintf(&b, "  groups: %s\n", strings.Join(u.Groups, ", "))
		}
		if u.UID != "" {
			fmt.Fprintf(&b, "  uid:    %s\n", u.UID)
		}
	} else {
		fmt.Fprintf(&b, "Not authenticated: %s\n", r.Reason)
		if r.Detail != "" {
			fmt.Fprintf(&b, "  %s\n", r.Detail)
		}
		if r.Hint != "" {
			fmt.Fprintf(&b, "  fix: %s\n", r.Hint)
		}
	}
	fmt.Fprintf(&b, "(%s)\n", r.Note)
	_, _ = w.Write(b.Bytes())
}
