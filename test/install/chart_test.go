//go:build integration

package install

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func TestChartLint(t *testing.T) {
	ctx := context.Background()
	for _, set := range [][]string{nil, {"--set", "install=webhook", "--set", "hosted.kubeconfigSecret=served-kubeconfig"}, {"--set", "install=served"}} {
		if out, err := helm(ctx, append([]string{"lint", "--strict", chartDir}, set...)...); err != nil {
			t.Errorf("helm lint --strict %v: %v\n%s", set, err, out)
		}
	}
}

// TestChartRefusesBadValues: values.schema.json and the templates' own checks refuse a wrong value with
// a message that names it, before anything reaches the cluster.
func TestChartRefusesBadValues(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		set  []string
		want string
	}{
		{[]string{"replicas=2"}, "additional properties 'replicas' not allowed"},
		{[]string{"serve.maxConcurrentReviews=3"}, "additional properties 'maxConcurrentReviews' not allowed"},
		{[]string{"serve.cache-ttl=10"}, "/serve/cache-ttl"},
		{[]string{"serve.cache-ttl=ten"}, "/serve/cache-ttl"},
		{[]string{"serve.max-concurrent-reviews=0"}, "/serve/max-concurrent-reviews"},
		{[]string{"tls.source=vault"}, "/tls/source"},
		{[]string{"install=webhook"}, "/hosted/kubeconfigSecret"},
		{[]string{"ports.https=70000"}, "/ports/https"},
		{[]string{"networkPolicy.enabled=true"}, "/networkPolicy/apiServerCIDRs"},
		{[]string{"clientAuth.enabled=true"}, "/clientAuth/caConfigMap"},
		{[]string{"resources.limits.memory=1.5Gi"}, "GOMEMLIMIT is derived from it"},
		{[]string{"autoscaling.enabled=true", "autoscaling.minReplicas=4", "autoscaling.maxReplicas=2"}, "maxReplicas must be at least"},
	} {
		args := []string{"template", releaseName, chartDir, "-n", releaseNS}
		for _, s := range c.set {
			args = append(args, "--set", s)
		}
		out, err := helm(ctx, args...)
		if err == nil {
			t.Errorf("--set %v rendered; want a refusal naming %q", c.set, c.want)
			continue
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("--set %v: the refusal does not name %q:\n%s", c.set, c.want, out)
		}
	}
}

// combination is one way of installing the chart and the objects its render must hold.
type combination struct {
	name string
	set  []string
	want []string // kind/name
}

// usesTheHost tells the combinations whose pods use the node (hostNetwork, a hostPath), which the
// restricted Pod Security level refuses: they need a privileged namespace, as the chart's README says.
func (c combination) usesTheHost() bool {
	return contains(c.set, "hostNetwork=true") || contains(c.set, "tls.source=none")
}

var combinations = []combination{
	{"defaults: existing Secret", nil, []string{
		"Deployment/dryrun-clustertrust", "Service/dryrun-clustertrust", "PodDisruptionBudget/dryrun-clustertrust",
		"ServiceAccount/dryrun-clustertrust", "ClusterRole/dryrun-clustertrust", "ClusterRoleBinding/dryrun-clustertrust",
		"Role/dryrun-clustertrust-leader-election", "RoleBinding/dryrun-clustertrust-leader-election",
		"CustomResourceDefinition/openidconnects.authentication.clustertrust.io",
	}},
	{"existing Secret of another name", []string{"tls.secretName=corp-issued-cert"}, []string{"Deployment/dryrun-clustertrust"}},
	{"cert-manager with the chart's own CA", []string{"tls.source=cert-manager", "service.clusterIP=10.0.0.200"}, []string{
		"Issuer/dryrun-clustertrust-selfsigned", "Certificate/dryrun-clustertrust-ca", "Issuer/dryrun-clustertrust-ca",
		"Certificate/dryrun-clustertrust-serving", "Deployment/dryrun-clustertrust",
	}},
	{"cert-manager with a ClusterIssuer", []string{"tls.source=cert-manager", "tls.certManager.issuerRef.kind=ClusterIssuer",
		"tls.certManager.issuerRef.name=corp-ca", "tls.certManager.ipAddresses[0]=192.0.2.10", "tls.certManager.dnsNames[0]=clustertrust.example.com"},
		[]string{"Certificate/dryrun-clustertrust-serving"}},
	{"none: files on the node", []string{"tls.source=none", "hostNetwork=true", "dnsPolicy=ClusterFirstWithHostNet",
		"nodeSelector.node-role\\.kubernetes\\.io/control-plane=", "tolerations[0].key=node-role.kubernetes.io/control-plane",
		"tolerations[0].effect=NoSchedule"}, []string{"Deployment/dryrun-clustertrust"}},
	{"hosted: the served cluster's part", []string{"install=served", "hosted.createTokenSecret=true"}, []string{
		"ServiceAccount/dryrun-clustertrust", "Secret/dryrun-clustertrust-token", "ClusterRole/dryrun-clustertrust",
		"ClusterRoleBinding/dryrun-clustertrust", "Role/dryrun-clustertrust-leader-election", "RoleBinding/dryrun-clustertrust-leader-election",
	}},
	{"hosted: the served cluster's part for a certificate user", []string{"install=served", "serviceAccount.create=false",
		"hosted.identity.kind=User", "hosted.identity.name=clustertrust"}, []string{"ClusterRoleBinding/dryrun-clustertrust"}},
	{"hosted: the webhook's part", []string{"install=webhook", "hosted.kubeconfigSecret=served-kubeconfig", "tls.source=cert-manager"}, []string{
		"Deployment/dryrun-clustertrust", "Service/dryrun-clustertrust", "Certificate/dryrun-clustertrust-serving",
	}},
	{"every optional object", []string{"metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
		"grafanaDashboard.enabled=true", "autoscaling.enabled=true", "networkPolicy.enabled=true",
		"networkPolicy.apiServerCIDRs[0]=10.0.0.10/32", "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
		"networkPolicy.probesFrom[0].ipBlock.cidr=10.0.0.0/16", "clientAuth.enabled=true", "clientAuth.caConfigMap=kube-apiserver-client-ca",
		"serve.v=2", "serve.cache-ttl=30s"}, []string{
		"ServiceMonitor/dryrun-clustertrust", "PrometheusRule/dryrun-clustertrust", "ConfigMap/dryrun-clustertrust-dashboard",
		"HorizontalPodAutoscaler/dryrun-clustertrust", "NetworkPolicy/dryrun-clustertrust", "Deployment/dryrun-clustertrust",
	}},
}

// TestChartCombinationsApply renders each combination and applies it with a server-side dry run: the
// kube-apiserver validates every object against its real schema (cert-manager's and the Prometheus
// Operator's CRDs are installed for theirs).
func TestChartCombinationsApply(t *testing.T) {
	ctx := context.Background()
	restrictedNamespace(t, "dryrun")
	for _, c := range combinations {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"template", "dryrun", chartDir, "-n", "dryrun", "--include-crds"}
			for _, s := range c.set {
				args = append(args, "--set", s)
			}
			rendered, err := helm(ctx, args...)
			if err != nil {
				t.Fatalf("helm %v: %v\n%s", args, err, rendered)
			}
			objs := decodeAll(t, rendered)
			have := map[string]bool{}
			for _, o := range objs {
				have[fmt.Sprintf("%s/%s", o["kind"], name(o))] = true
			}
			for _, w := range c.want {
				if !have[w] {
					t.Errorf("the render lacks %s; it has %v", w, keys(have))
				}
			}
			out, err := kubectl(ctx, rendered, "apply", "--dry-run=server", "-n", "dryrun", "-f", "-")
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
			}
			if n := strings.Count(out, "(server dry run)"); n != len(objs) {
				t.Errorf("the dry run applied %d objects of %d:\n%s", n, len(objs), out)
			}
			checkRenderedPods(t, objs, c.usesTheHost())
		})
	}
}

// checkRenderedPods checks what a dry run of the Deployment alone does not: that its pods pass the
// restricted Pod Security level of the namespace (or, for pods that use the node, that they are refused
// by it, as documented), and that the Service and the PodDisruptionBudget select them.
func checkRenderedPods(t *testing.T, objs []map[string]any, usesTheHost bool) {
	t.Helper()
	var dep *appsv1.Deployment
	for _, o := range objs {
		if o["kind"] == "Deployment" {
			dep = &appsv1.Deployment{}
			convert(t, o, dep)
			dep.Namespace = "dryrun"
		}
	}
	if dep == nil {
		return
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "dryrun-", Namespace: "dryrun", Labels: dep.Spec.Template.Labels}, Spec: dep.Spec.Template.Spec}
	_, err := kube.CoreV1().Pods("dryrun").Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	switch {
	case usesTheHost && (err == nil || !strings.Contains(err.Error(), "PodSecurity")):
		t.Errorf("a pod that uses the node passed the restricted level (err %v): the README's advice would be wrong", err)
	case !usesTheHost && err != nil:
		t.Errorf("the pods would be refused in a restricted namespace: %v", err)
	}
	for _, o := range objs {
		switch o["kind"] {
		case "Service":
			svc := &corev1.Service{}
			convert(t, o, svc)
			checkServiceSelects(t, svc, dep)
		case "PodDisruptionBudget":
			pdb := &policyv1.PodDisruptionBudget{}
			convert(t, o, pdb)
			for k, v := range pdb.Spec.Selector.MatchLabels {
				if dep.Spec.Template.Labels[k] != v {
					t.Errorf("the PodDisruptionBudget selects %s=%s; the pods are labelled %v", k, v, dep.Spec.Template.Labels)
				}
			}
		}
	}
}

func convert(t *testing.T, from map[string]any, into any) {
	t.Helper()
	b, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
}

// TestKustomizeMatchesHelm: config/default and config/overlays/cert-manager render the same objects as
// the chart with its defaults and with tls.source=cert-manager, once the labels only Helm sets are set
// aside (the CRD is the same file; a unit test keeps the copy current).
func TestKustomizeMatchesHelm(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		kustomization string
		set           []string
	}{
		{"../../config/default", nil},
		{"../../config/overlays/cert-manager", []string{"--set", "tls.source=cert-manager"}},
	} {
		t.Run(c.kustomization, func(t *testing.T) {
			k, err := kubectl(ctx, "", "kustomize", c.kustomization)
			if err != nil {
				t.Fatalf("kubectl kustomize: %v\n%s", err, k)
			}
			h, err := helm(ctx, append([]string{"template", releaseName, chartDir, "-n", releaseNS}, c.set...)...)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, h)
			}
			fromK, fromH := index(t, k), index(t, h)
			if !reflect.DeepEqual(keys(fromK), keys(fromH)) {
				t.Errorf("kustomize renders %v\nHelm renders      %v", keys(fromK), keys(fromH))
			}
			for id, kobj := range fromK {
				hobj, ok := fromH[id]
				if !ok {
					continue
				}
				if !reflect.DeepEqual(kobj, hobj) {
					kj, _ := json.MarshalIndent(kobj, "", "  ")
					hj, _ := json.MarshalIndent(hobj, "", "  ")
					t.Errorf("%s differs:\n--- kustomize\n%s\n--- helm\n%s", id, kj, hj)
				}
			}
			for _, must := range []string{"Deployment/clustertrust-system/clustertrust", "ClusterRole//clustertrust", "ClusterRoleBinding//clustertrust", "Role/clustertrust-system/clustertrust-leader-election"} {
				if _, ok := fromK[must]; !ok {
					t.Errorf("the comparison did not cover %s", must)
				}
			}
		})
	}
}

// helmOnlyLabels are the labels the chart adds to objects' metadata for Helm's bookkeeping; kustomize
// has no release. Selectors and pod labels are compared as they are.
var helmOnlyLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}

// index decodes a render into objects keyed by kind/namespace/name, without the Namespace and CRD and
// without Helm's labels in their metadata.
func index(t *testing.T, stream string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, o := range decodeAll(t, stream) {
		kind := o["kind"].(string)
		if kind == "Namespace" || kind == "CustomResourceDefinition" {
			continue
		}
		meta, _ := o["metadata"].(map[string]any)
		ns, _ := meta["namespace"].(string)
		if labels, ok := meta["labels"].(map[string]any); ok {
			for _, l := range helmOnlyLabels {
				delete(labels, l)
			}
		}
		out[fmt.Sprintf("%s/%s/%s", kind, ns, name(o))] = o
	}
	return out
}

func decodeAll(t *testing.T, stream string) []map[string]any {
	t.Helper()
	d := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(stream), 4096)
	var objs []map[string]any
	for {
		var o map[string]any
		if err := d.Decode(&o); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decode the render: %v", err)
		}
		if len(o) > 0 {
			objs = append(objs, o)
		}
	}
}

func name(o map[string]any) string {
	meta, _ := o["metadata"].(map[string]any)
	n, _ := meta["name"].(string)
	return n
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
