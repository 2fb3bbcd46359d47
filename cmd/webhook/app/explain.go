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
	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/registry"
)

// exitError is an error with the exit code Main returns for it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errNotAuthenticated makes `webhook explain` exit 1 after printing why; its other errors exit 2.
var errNotAuthenticated = &exitError{1, errors.New("the token would not be authenticated")}

// explainReport is what `webhook explain` prints: the request path's explanation, and what it knows of
// the objects the router did not try.
type explainReport struct {
	authn.Explanation
	// Objects lists every object read, and whether the router would try it for this token.
	Objects []explainedObject `json:"objects"`
	// RefusedFiles are the files of --config-dir the webhook would refuse, with why.
	RefusedFiles map[string]string `json:"refusedFiles,omitempty"`
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
		maxTokenBytes                            int
	)
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Say step by step whether the webhook would authenticate a token, and why not",
		Long: `explain reads a token from a file or stdin (never from a flag, so it stays out of shell history), the
OpenIDConnect objects from the cluster of --kubeconfig or from --config-dir, and each issuer's keys the
way the webhook gets them, from where explain runs. It then runs the webhook's own request path on the
token and prints the token's unverified claims, the objects the router tries and in which order, the
first check each one failed with its reason, and a hint that names the fix.

It exits 0 when the token would be authenticated, 1 when not, and 2 when it could not tell (the
objects or keys could not be read). Nothing of the token is printed but its claims, which its holder
can read anyway.`,
		Example: `  kubectl --context upstream -n tenant-a create token reconciler --audience https://downstream:6443 \
    | webhook explain --kubeconfig downstream.kubeconfig
  webhook explain --token-file token.jwt --config-dir /etc/kubernetes/clustertrust/issuers --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cannotTell := func(err error) error { return &exitError{2, err} }
			if output != "text" && output != "json" {
				return cannotTell(fmt.Errorf("--output %q is neither text nor json", output))
			}
			if kubeconfig != "" && configDir != "" {
				return cannotTell(errors.New("give --kubeconfig or --config-dir, not both"))
			}
			token, err := readToken(cmd.InOrStdin(), tokenFile)
			if err != nil {
				return cannotTell(err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			objs, refused, err := readObjects(ctx, kubeconfig, configDir)
			if err != nil {
				return cannotTell(err)
			}
			report, err := explain(ctx, objs, token, audiences, maxTokenBytes)
			if err != nil {
				return cannotTell(err)
			}
			report.RefusedFiles = refused
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
	fs.IntVar(&maxTokenBytes, "max-token-bytes", authn.MaxTokenBytes, "The webhook's --max-token-bytes.")
	return cmd
}

// readToken reads the token from path (stdin for -), dropping the line break a file or `kubectl create
// token` ends with. doctor reads its --token-file the same way.
func readToken(stdin io.Reader, path string) (string, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path) //nolint:gosec // G304: the file the user named
		if err != nil {
			return "", fmt.Errorf("could not read the token: %w", err)
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, authn.MaxTokenBytesLimit+2))
	if err != nil {
		return "", fmt.Errorf("could not read the token: %w", err)
	}
	if len(b) > authn.MaxTokenBytesLimit+1 {
		return "", fmt.Errorf("the token file holds more than %d bytes: no token the webhook accepts is that long", authn.MaxTokenBytesLimit)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}

// readObjects lists the OpenIDConnect objects of the cluster, or loads those of a directory exactly as
// the file source does (refused files, with why, are returned apart).
func readObjects(ctx context.Context, kubeconfig, configDir string) ([]v1alpha1.OpenIDConnect, map[string]string, error) {
	if configDir != "" {
		if fi, err := os.Stat(configDir); err != nil || !fi.IsDir() {
			return nil, nil, fmt.Errorf("--config-dir %q is not a readable directory", configDir)
		}
		refused := map[string]string{}
		log := funcr.New(func(_, args string) {}, funcr.Options{})
		log = logr.New(&refusalSink{LogSink: log.GetSink(), refused: refused})
		src := &registry.FileSource{Dir: configDir, Log: log}
		src.Load(ctx)
		return src.List(), refused, nil
	}
	objs, err := apiObjectLister(kubeconfig)(ctx) // as doctor lists them
	return objs, nil, err
}

// refusalSink records the files the file source refuses, from its error log lines.
type refusalSink struct {
	logr.LogSink
	refused map[string]string
}

func (s *refusalSink) Error(err error, _ string, kv ...any) {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "file" {
			s.refused[filepath.Base(fmt.Sprint(kv[i+1]))] = err.Error()
		}
	}
}

func (s *refusalSink) WithValues(...any) logr.LogSink { return s }
func (s *refusalSink) WithName(string) logr.LogSink   { return s }

// explain routes the objects as the webhook does (same translation, same entries, same router, so the
// same order and the same conflicts), loads the keys of the token's issuer, and explains the token.
func explain(ctx context.Context, objs []v1alpha1.OpenIDConnect, token string, audiences []string, maxTokenBytes int) (*explainReport, error) {
	router := authn.NewRouter()
	compiler := authn.NewCompiler()
	report := &explainReport{Note: "the keys were fetched from where explain runs; the webhook fetches them from where it runs"}
	iss, _ := authn.PeekIssuer(token) // "" for a token without one
	var entries []*authn.Entry
	defer func() {
		for _, e := range entries {
			e.Close()
		}
	}()
	sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
	why := map[string]string{}
	for i := range objs {
		obj := &objs[i]
		if obj.DeletionTimestamp != nil {
			why[obj.Name] = "being deleted, so the webhook no longer routes it"
			continue
		}
		cfg, err := registry.ToConfig(obj)
		var e *authn.Entry
		if err == nil {
			e, err = authn.NewEntry(cfg, authn.EntryOptions{Compiler: compiler, Log: logr.Discard()})
		}
		switch {
		case err != nil:
			why[obj.Name] = "invalid, so the webhook does not route it: " + err.Error()
		case iss == "":
			why[obj.Name] = "the token names no issuer"
		case obj.Spec.IssuerURL != iss:
			why[obj.Name] = fmt.Sprintf("its issuer is %s, the token's is %s", obj.Spec.IssuerURL, iss)
		}
		if e != nil {
			// Only the token's issuer's keys are loaded; the others' objects are routed for the conflicts.
			if cfg.Issuer == iss {
				e.Start()
			}
			entries = append(entries, e)
			router.Store(obj.Name, e)
		}
	}
	for _, obj := range objs {
		o := explainedObject{Name: obj.Name, Issuer: obj.Spec.IssuerURL, Why: why[obj.Name]}
		if winner, conflicting := router.Conflict(obj.Name); conflicting && o.Why == "" {
			o.Why = fmt.Sprintf("not routed: it conflicts with %s, which maps the same issuer's tokens to other usernames and wins (the webhook reports Ready=False, reason Conflict)", winner)
		}
		o.Considered = o.Why == ""
		report.Objects = append(report.Objects, o)
	}
	// Wait for the first key load of the token's issuer, as a webhook replica does before it is ready.
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
	report.Explanation = router.Explain(ctx, token, audiences, maxTokenBytes)
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
		switch {
		case d == 0:
			rel = "now"
		case d < 0:
			rel = (-d).String() + " ago"
		}
		return t.UTC().Format(time.RFC3339) + " (" + rel + ")"
	}
	field("exp", when(c.Expiry))
	field("nbf", when(c.NotBefore))
	field("iat", when(c.IssuedAt))
	field("kid", c.KeyID)
	field("alg", c.Algorithm)

	for file, err := range r.RefusedFiles {
		fmt.Fprintf(&b, "\nRefused file %s (the webhook serves its last good objects, if any): %s\n", file, err)
	}
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
