// Command webhook is clustertrust: a kube-apiserver TokenReview webhook that trusts the issuers declared
// as OpenIDConnect objects.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/clustertrust/clustertrust/cmd/webhook/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
