// Command loadgen measures clustertrust's request path under load, against a ceiling measured in the
// same run. It serves N test issuers on loopback, starts the webhook's request path (internal/authn:
// router, key sets, result cache, TokenReview handler over HTTPS) as a child process of its own so its
// CPU can be measured apart from the load, mints Kubernetes-shaped ServiceAccount tokens and drives
// TokenReview POSTs over keep-alive HTTPS connections. Every answer is checked; a wrong one fails the
// run. There are two ceilings: a trivial TLS handler that answers a fixed TokenReview, and a minimal
// verifier (minimal.go: stdlib only, one decode, one signature check, iss/aud/exp/nbf, prefix + sub),
// each measured in the same run; and raw signature checks.
//
//	go run ./hack/loadgen [-duration 10s] [-concurrency 64] [-issuers 1000] [-alg RS256] [-http2]
//
// With -http2 the scenarios run over HTTP/2, as kube-apiserver's webhook client does: the servers
// negotiate h2 by ALPN and the load generator multiplexes all its concurrent reviews as streams of one
// connection to each server (every answer must come back over h2). Without it, each concurrent review
// has a keep-alive HTTP/1.1 connection of its own.
//
// The hangflood mode (hangflood.go) floods the webhook, configured as `webhook serve` defaults, with
// forged unknown-kid tokens of an issuer whose discovery and JWKS hang, and measures valid reviews
// beside the flood against the same valid load alone:
//
//	go run ./hack/loadgen -modes hangflood [-duration 10s] [-flood-connections 300] [-valid-concurrency 8] [-flood-rate 0] [-hangflood-ceiling]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// allModes are the scenarios, in the order they run; all run by default.
var allModes = []string{"trivial", "minimal", "unique", "hot", "issuers", "invalid", "flood", "latency", "hangflood"}

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
	// http2 drives the classic scenarios over HTTP/2 instead of HTTP/1.1.
	http2 bool
	// cpuProfile and memProfile, when set, make the webhook child write a CPU profile and an allocation
	// profile of its whole run to these files.
	cpuProfile, memProfile string
	// hangflood mode
	floodConns       int
	validConcurrency int
	floodRate        float64
	hangCeiling      bool
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	var o options
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "How long each scenario runs.")
	fs.IntVar(&o.concurrency, "concurrency", 64, "Concurrent keep-alive connections.")
	fs.IntVar(&o.issuers, "issuers", 1000, "Issuers served for the issuers mode.")
	fs.StringVar(&o.alg, "alg", "RS256", "Signing algorithm of the test issuers: RS256 or ES256.")
	fs.StringVar(&o.modes, "modes", strings.Join(allModes, ","), "Scenarios to run, comma separated.")
	fs.BoolVar(&o.http2, "http2", false, "Run the scenarios (all but hangflood) over HTTP/2, one multiplexed connection to each server, as kube-apiserver's webhook client does; HTTP/1.1 keep-alive connections otherwise.")
	fs.StringVar(&o.cpuProfile, "webhook-cpuprofile", "", "Write a CPU profile of the webhook child, over all the scenarios it serves, to this file (go tool pprof).")
	fs.StringVar(&o.memProfile, "webhook-memprofile", "", "Write an allocation profile of the webhook child, as it stops, to this file (go tool pprof -sample_index=alloc_space).")
	fs.IntVar(&o.floodConns, "flood-connections", 300, "hangflood: concurrent keep-alive connections sending forged tokens.")
	fs.IntVar(&o.validConcurrency, "valid-concurrency", 8, "hangflood: concurrent connections sending valid tokens beside the flood.")
	fs.Float64Var(&o.floodRate, "flood-rate", 0, "hangflood: when above 0, also run the flood rate-limited to this many forged reviews/s in all.")
	fs.BoolVar(&o.hangCeiling, "hangflood-ceiling", false, "hangflood: run the same phases against the trivial TLS handler (which says yes to every token) instead of the webhook, to see what the flood costs any server on this machine.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.duration <= 0 || o.duration > 5*time.Minute || o.concurrency < 1 || o.concurrency > 1024 || o.issuers < 1 || o.issuers > 10000 {
		return fmt.Errorf("flags out of range: duration (0,5m], concurrency [1,1024], issuers [1,10000]")
	}
	if o.floodConns < 1 || o.floodConns > 1024 || o.validConcurrency < 1 || o.validConcurrency > 256 || o.floodRate < 0 || o.floodRate > 1e6 {
		return fmt.Errorf("flags out of range: flood-connections [1,1024], valid-concurrency [1,256], flood-rate [0,1e6]")
	}
	for _, m := range strings.Split(o.modes, ",") {
		if !slices.Contains(allModes, m) {
			return fmt.Errorf("unknown mode %q; the modes are %s", m, strings.Join(allModes, ","))
		}
	}
	return bench(ctx, o)
}
