package app

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// Version is clustertrust's release version. The Helm chart's version and appVersion move with it
// (charts/clustertrust/Chart.yaml; a test keeps them equal), and the chart's default image tag is it.
const Version = "0.1.0"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the webhook's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "clustertrust %s (%s, %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
