// Package app is the webhook binary's composition root: its commands, flags and wiring.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Main runs the webhook command line and returns the process exit code. A failure is reported on
// stderr as one line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := NewRootCommand(stdout, stderr)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		_, _ = fmt.Fprintf(stderr, "error: %v\n", err)
		var exit *exitError
		if errors.As(err, &exit) {
			return exit.code
		}
		return 1
	}
	return 0
}

// NewRootCommand builds the webhook command tree.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "webhook",
		Short: "clustertrust: trust other clusters' ServiceAccount tokens and OIDC issuers",
		Long: `clustertrust is a kube-apiserver authentication webhook (TokenReview). It verifies bearer tokens
against the issuers declared as cluster-scoped OpenIDConnect objects and answers with prefixed
usernames and groups that RBAC on this cluster binds to.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServeCommand(), newTrustCommand(), newAPIServerConfigCommand(), newPublishDiscoveryCommand(), newSyncKeysCommand(), newVersionCommand(), newExplainCommand(), newDoctorCommand(), newConvertCommand())
	return root
}
