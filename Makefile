# clustertrust — run `make help` for the targets.

KUBERNETES_VERSION ?= 1.37.2
# The oldest kube-apiserver clustertrust supports; `make test-install` proves the chart and a review on it.
OLDEST_KUBERNETES_VERSION ?= 1.34.4
ETCD_VERSION ?= 3.7.3
CONTROLLER_GEN_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
HELM_VERSION ?= v3.22.0
# The Kubernetes minor of the client libraries HELM_VERSION is built with (its go.mod): helm's own
# Makefile stamps it in, and `helm template` renders for that version instead of its fallback, v1.20.
HELM_K8S_MINOR ?= 37

LOCALBIN := $(CURDIR)/bin
CONTROLLER_GEN := $(LOCALBIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT := $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
HELM := $(LOCALBIN)/helm-$(HELM_VERSION)
ASSETS := $(LOCALBIN)/k8s/$(KUBERNETES_VERSION)
FUZZTIME ?= 30s
# How much `make test` runs each fuzz target: the seed corpus and a few thousand explored inputs, so a
# regression in a parser or in the fast path fails CI; `make fuzz` explores for longer. A count, not a
# duration: Go 1.26's fuzz coordinator can fail a duration-bounded run with "context deadline exceeded"
# at the deadline on a loaded machine, with no failing input (go.dev/issue/75804, fixed in Go 1.27).
TEST_FUZZTIME ?= 3000x
FUZZ_TARGETS := FuzzPeekIssuer FuzzDecodeReview FuzzDecodeReviewFast FuzzParseJWKS FuzzAuthenticate FuzzFastPathMatchesGeneralPath

export KUBERNETES_VERSION ETCD_VERSION

.DEFAULT_GOAL := help
SHELL := /usr/bin/env bash -o pipefail

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and the ClusterRole under config/.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=clustertrust paths=./internal/registry/... output:rbac:artifacts:config=config/rbac

.PHONY: fmt
fmt: ## Format the Go code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet (with the e2e build tag, so the e2e suite is checked too).
	go vet -tags e2e,integration ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (pinned) with the rules in .golangci.yml.
	$(GOLANGCI_LINT) run ./...

.PHONY: chart-docs
chart-docs: ## Copy the CRD, the dashboard and the alert rules into the Helm chart and regenerate its README's values table.
	cp config/crd/bases/authentication.clustertrust.io_openidconnects.yaml charts/clustertrust/crds/
	cp config/grafana/clustertrust.json charts/clustertrust/dashboards/clustertrust.json
	{ echo "# Generated from config/prometheus/alerts.yaml by make chart-docs: edit that file."; \
	  sed -n '/^spec:/,$$p' config/prometheus/alerts.yaml | sed '1d; s/^  //'; } > charts/clustertrust/files/prometheus-rules.yaml
	go run ./hack/chartdoc -strict

.PHONY: verify
verify: generate manifests chart-docs ## Regenerate code, manifests and the chart's copies; fail if anything changed, or if code is unformatted.
	@git diff --exit-code -- api config charts || { echo "generated files are out of date: run 'make generate manifests chart-docs' and commit"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "unformatted files:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

##@ Test

.PHONY: test
test: vet lint test-unit test-fuzz test-integration test-install test-e2e ## Run every test: lint, unit, fuzz (TEST_FUZZTIME each), integration (real kube-apiserver), install (Helm chart, on the newest and oldest kube-apiserver) and e2e (two clusters).

.PHONY: test-unit
test-unit: ## Unit tests (no API server needed), then the count of kube-apiserver's own JWT test cases the conformance table covers.
	go test -race -count=1 ./api/... ./cmd/... ./internal/... ./config/... ./charts/... ./hack/chartdoc/...
	@go test -count=1 -run '^TestConformanceKubeAPIServerToken$$' -v ./internal/authn | grep -E 'TestToken: [0-9]+ cases'

.PHONY: test-integration
test-integration: control-plane ## Integration tests: the webhook behind a real kube-apiserver and etcd (envtest).
	KUBEBUILDER_ASSETS=$(ASSETS) go test -tags integration -count=1 -v ./test/integration/...

.PHONY: test-install
test-install: control-plane control-plane-oldest $(HELM) ## The Helm chart and config/ against a real kube-apiserver: lint, schema, dry runs, kustomize parity, install/renew/upgrade; on KUBERNETES_VERSION and OLDEST_KUBERNETES_VERSION.
	@crds="$$(hack/third-party-crds.sh)" && for v in $(KUBERNETES_VERSION) $(OLDEST_KUBERNETES_VERSION); do \
	  echo "--- install suite on kube-apiserver $$v"; \
	  KUBEBUILDER_ASSETS=$(LOCALBIN)/k8s/$$v HELM=$(HELM) THIRD_PARTY_CRDS="$$crds" go test -tags integration -count=1 -v ./test/install/... || exit 1; \
	done

.PHONY: test-e2e
test-e2e: control-plane ## E2E tests across an upstream, a downstream and an untrusted third control plane.
	KUBEBUILDER_ASSETS=$(ASSETS) hack/e2e.sh

.PHONY: test-fuzz
test-fuzz: ## Run each fuzz target for TEST_FUZZTIME (3000 inputs): part of `make test`.
	@found="$$(grep -ho '^func Fuzz[A-Za-z0-9]*' internal/authn/*_test.go | cut -d' ' -f2 | sort | tr '\n' ' ')"; \
	  listed="$$(echo $(FUZZ_TARGETS) | tr ' ' '\n' | sort | tr '\n' ' ')"; \
	  [ "$$found" = "$$listed" ] || { echo "FUZZ_TARGETS ($$listed) must list every fuzz target ($$found)"; exit 1; }
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

.PHONY: fuzz
fuzz: ## Run each fuzz target (iss peek, TokenReview decoders, JWKS parser, whole request path, fast vs general path) for FUZZTIME (30s).
	@for target in $(FUZZ_TARGETS); do \
	  echo "--- $$target"; \
	  go test ./internal/authn -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

.PHONY: bench
bench: ## Benchmarks of the request path (-benchmem) and the load generator against its in-run ceiling.
	go test ./internal/authn -run '^$$' -bench . -benchmem -benchtime 2s
	go run ./hack/loadgen $(LOADGEN_FLAGS)

##@ Build

.PHONY: build
build: ## Build the webhook binary into bin/webhook.
	go build -o $(LOCALBIN)/webhook ./cmd/webhook

.PHONY: run
run: ## Run the webhook on 127.0.0.1:9443 with --source=file and a sample issuer (no cluster); prints a curl to try.
	go run ./hack/runlocal

.PHONY: control-plane
control-plane: ## Build kube-apiserver, etcd and kubectl from source into bin/k8s/<version> (once).
	hack/build-control-plane.sh >/dev/null

.PHONY: control-plane-oldest
control-plane-oldest: ## Build the oldest supported kube-apiserver (OLDEST_KUBERNETES_VERSION) the same way.
	KUBERNETES_VERSION=$(OLDEST_KUBERNETES_VERSION) hack/build-control-plane.sh >/dev/null

##@ Demo

.PHONY: demo
demo: ## Bring up two clusters and show one trusting the other's ServiceAccount tokens.
	hack/demo.sh

.PHONY: demo-down
demo-down: ## Stop the demo's clusters and clustertrust and remove their files.
	hack/clusters.sh down

##@ Tools

$(CONTROLLER_GEN):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.tmp go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(LOCALBIN)/.tmp/controller-gen $@ && rmdir $(LOCALBIN)/.tmp

$(HELM):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.tmp go install -trimpath -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR) \
	  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR)" \
	  helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/.tmp/helm $@ && rmdir $(LOCALBIN)/.tmp

.PHONY: helm
helm: $(HELM) ## Build Helm (pinned) into bin/.

$(GOLANGCI_LINT):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.tmp go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/.tmp/golangci-lint $@ && rmdir $(LOCALBIN)/.tmp
