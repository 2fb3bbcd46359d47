// Command loadgen measures clustertrust's request path under load, against a ceiling measured in the
// same run. It serves N test issuers on loopback, starts the webhook's request path (internal/authn:
// router, key sets, result cache, TokenReview handler over HTTPS) as a child process of its own so its
// CPU can be measured apart from the load, mints Kubernetes-shaped ServiceAccount tokens and drives
// TokenReview POSTs over keep-alive HTTPS connections. Every answer is checked; a wrong one fails the
// run. The ceiling is a trivial TLS handler that answers a fixed TokenReview, and raw signature checks.
//
//	go run ./hack/loadgen [-duration 10s] [-concurrency 64] [-issuers 1000] [-alg RS256]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen serve: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	duration    time.Duration
	concurrency int
	issuers     int
	alg         string
	modes       string
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	var o options
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "How long each scenario runs.")
	fs.IntVar(&o.concurrency, "concurrency", 64, "Concurrent keep-alive connections.")
	fs.IntVar(&o.issuers, "issuers", 1000, "Issuers served for the issuers mode.")
	fs.StringVar(&o.alg, "alg", "RS256", "Signing algorithm of the test issuers: RS256 or ES256.")
	fs.StringVar(&o.modes, "modes", "trivial,unique,hot,issuers,invalid,flood,latency", "Scenarios to run, comma separated.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.duration <= 0 || o.duration > 5*time.Minute || o.concurrency < 1 || o.concurrency > 1024 || o.issuers < 1 || o.issuers > 10000 {
		return fmt.Errorf("flags out of range: duration (0,5m], concurrency [1,1024], issuers [1,10000]")
	}
	return bench(ctx, o)
}
