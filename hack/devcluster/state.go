package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// State is what `up` started, written to <state-dir>/state.json so that later commands (env, stop,
// start, rotate-key, down) act on exactly those processes and nothing else.
type State struct {
	Dir       string              `json:"dir"`
	Clusters  map[string]*Cluster `json:"clusters"`
	Webhook   *Process            `json:"webhook,omitempty"`
	WebhookCA string              `json:"webhookCA"`
	// WebhookKubeconfig is the file the downstream kube-apiserver calls clustertrust with.
	WebhookKubeconfig string `json:"webhookKubeconfig"`
	// WebhookURL is clustertrust's /authenticate URL; ProbeURL and MetricsURL its plain-HTTP endpoints.
	WebhookURL string `json:"webhookURL"`
	ProbeURL   string `json:"probeURL"`
	MetricsURL string `json:"metricsURL"`
}

// Cluster is one control plane: an etcd and a kube-apiserver.
type Cluster struct {
	Name       string   `json:"name"`
	Dir        string   `json:"dir"`
	Port       int      `json:"port"`
	EtcdPort   int      `json:"etcdPort"`
	Issuer     string   `json:"issuer"`
	Kubeconfig string   `json:"kubeconfig"`
	CAFile     string   `json:"caFile"`
	SAKeys     []string `json:"saKeys"` // private key files, oldest first; the last one signs
	Etcd       *Process `json:"etcd,omitempty"`
	APIServer  *Process `json:"apiserver,omitempty"`
	// ExtraArgs are added to kube-apiserver's command line (the downstream's webhook flags).
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// Process is one started process.
type Process struct {
	Name string   `json:"name"`
	PID  int      `json:"pid"`
	Path string   `json:"path"`
	Args []string `json:"args"`
	Log  string   `json:"log"`

	// exited is closed, and waitErr set, when a process started by this invocation exits.
	exited  chan struct{}
	waitErr error
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

func loadState(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no clusters are up (no %s): run `hack/clusters.sh up` first", statePath(dir))
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("could not read %s: %w", statePath(dir), err)
	}
	return &s, nil
}

func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(statePath(s.Dir), b, 0o600)
}
