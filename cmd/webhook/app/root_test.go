package app

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestHelp(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"serve", "--help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit code = %d, stderr = %s", code, errOut.String())
	}
	for _, flag := range []string{"--kubeconfig", "--secure-port", "--bind-address", "--tls-cert-file", "--tls-private-key-file",
		"--metrics-bind-address", "--health-probe-bind-address", "--key-refresh-interval", "--min-refetch-interval",
		"--client-ca-file", "--client-allowed-names", "--max-token-bytes", "--max-concurrent-reviews", "--cache-ttl", "--kube-api-qps"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("serve --help does not mention %s", flag)
		}
	}
}

func TestServeFailsWithOneLineReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no certificate", args: []string{"serve"}, want: "--tls-cert-file and --tls-private-key-file are required"},
		{name: "unknown flag", args: []string{"serve", "--nope"}, want: "unknown flag: --nope"},
		{name: "bad port", args: []string{"serve", "--tls-cert-file", "c", "--tls-private-key-file", "k", "--secure-port", "70000"}, want: "--secure-port 70000 is not a valid port"},
		{name: "missing certificate file", args: []string{"serve", "--tls-cert-file", "/nonexistent/c", "--tls-private-key-file", "/nonexistent/k"}, want: "could not read --tls-cert-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			if code := Main(context.Background(), tt.args, &out, &errOut); code == 0 {
				t.Fatal("exit code 0")
			}
			msg := errOut.String()
			if !strings.Contains(msg, tt.want) || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
				t.Fatalf("stderr = %q, want one line containing %q", msg, tt.want)
			}
		})
	}
}

func TestServeFailsOnUnreachableAPIServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	kubeconfig := dir + "/kubeconfig"
	writeFile(t, kubeconfig, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: x}}]
current-context: c
`)
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"serve", "--kubeconfig", kubeconfig, "--tls-cert-file", cert, "--tls-private-key-file", key}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "could not reach the API server at https://127.0.0.1:1") {
		t.Fatalf("code = %d, stderr = %q", code, errOut.String())
	}
}
