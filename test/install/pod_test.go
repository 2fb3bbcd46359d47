//go:build integration

package install

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clustertrust/clustertrust/test/framework"
)

// pod runs the webhook container of a stored Deployment as a local process and does for it what a
// kubelet would:
//   - the container's env, with the downward API's metadata.namespace and metadata.name, and $(VAR)
//     references in args expanded;
//   - Secret and ConfigMap volumes as files in the kubelet's atomic layout (files are symlinks into
//     ..data, which an update swaps), hostPath volumes from a directory the test names;
//   - the ServiceAccount's token as a kubeconfig (KUBECONFIG), unless the pod opts out of it.
//
// The pod's network namespace becomes loopback ports: --secure-port moves to the port the test chose
// (where kube-apiserver's webhook kubeconfig points), the bind addresses to 127.0.0.1, and the metrics
// and probe ports to free ones.
type pod struct {
	t          *testing.T
	dep        *appsv1.Deployment
	dir        string
	cmd        *exec.Cmd
	done       chan error
	exit       error // how the process ended, once it has
	log        string
	args       []string
	env        []string
	probePort  int
	volumes    map[string]string // volume name -> local directory of its files
	generation int
}

// hostPaths maps a hostPath volume's path to a local directory.
func startPod(t *testing.T, dep *appsv1.Deployment, securePort int, hostPaths map[string]string) *pod {
	t.Helper()
	ctx := context.Background()
	spec := dep.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	checkKubeletWouldRun(t, dep)
	// What this helper does not do, a chart must not use: it would pass here and fail in a cluster.
	if len(c.EnvFrom) > 0 || len(spec.InitContainers) > 0 {
		t.Fatal("the container uses envFrom or init containers, which this kubelet stand-in does not run")
	}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" || m.SubPathExpr != "" || !m.ReadOnly {
			t.Fatalf("mount %s: only whole, read-only mounts are supported here (and needed: the root filesystem is read-only)", m.Name)
		}
	}
	for _, v := range spec.Volumes {
		if (v.Secret != nil && len(v.Secret.Items) > 0) || (v.ConfigMap != nil && len(v.ConfigMap.Items) > 0) {
			t.Fatalf("volume %s selects items, which this kubelet stand-in does not do", v.Name)
		}
	}
	containerPorts := map[string]int32{}
	for _, cp := range c.Ports {
		containerPorts[cp.Name] = cp.ContainerPort
	}
	p := &pod{t: t, dep: dep, dir: t.TempDir(), done: make(chan error, 1), volumes: map[string]string{}}
	p.log = filepath.Join(p.dir, "webhook.log")

	// Volumes, then mounts: a mount path in an argument becomes the local directory.
	for _, v := range spec.Volumes {
		local := filepath.Join(p.dir, "volumes", v.Name)
		switch {
		case v.Secret != nil, v.ConfigMap != nil:
			p.volumes[v.Name] = local
		case v.HostPath != nil:
			dir, ok := hostPaths[v.HostPath.Path]
			if !ok {
				t.Fatalf("volume %s: hostPath %s has no local directory in this test", v.Name, v.HostPath.Path)
			}
			p.volumes[v.Name] = dir
		default:
			t.Fatalf("volume %s: only secret, configMap and hostPath volumes are supported here", v.Name)
		}
	}
	p.syncVolumes()
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		local, ok := p.volumes[m.Name]
		if !ok {
			t.Fatalf("mount %s names no volume", m.Name)
		}
		mounts[m.MountPath] = local
	}

	// Environment: literal values and the downward API.
	vars := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			vars[e.Name] = dep.Namespace
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			vars[e.Name] = dep.Name + "-local"
		default:
			t.Fatalf("env %s: only values and metadata.namespace/name field refs are supported here", e.Name)
		}
	}
	for k, v := range vars {
		p.env = append(p.env, k+"="+v)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		p.env = append(p.env, "KUBECONFIG="+p.serviceAccountKubeconfig(ctx, spec.ServiceAccountName))
	}

	metricsPort, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if p.probePort, err = framework.FreePort(); err != nil {
		t.Fatal(err)
	}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
		a = ref.ReplaceAllStringFunc(a, func(m string) string {
			if v, ok := vars[m[2:len(m)-1]]; ok {
				return v
			}
			return m // as the kubelet leaves an unknown reference
		})
		for mountPath, local := range mounts {
			a = strings.ReplaceAll(a, mountPath, local)
		}
		// Each port flag must be the container port of its name: the Service and the probes use those.
		portOf := func(flag, portName string) {
			port := strings.TrimPrefix(a, flag)
			if i := strings.LastIndex(port, ":"); i >= 0 {
				port = port[i+1:]
			}
			if want := containerPorts[portName]; strconv.Itoa(int(want)) != port {
				t.Fatalf("%s listens on port %s, but the container port %q is %d", a, port, portName, want)
			}
		}
		switch {
		case strings.HasPrefix(a, "--secure-port="):
			portOf("--secure-port=", "https")
			a = "--secure-port=" + strconv.Itoa(securePort)
		case strings.HasPrefix(a, "--bind-address="):
			a = "--bind-address=127.0.0.1"
		case strings.HasPrefix(a, "--metrics-bind-address="):
			portOf("--metrics-bind-address=", "metrics")
			a = "--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metricsPort)
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			portOf("--health-probe-bind-address=", "probes")
			a = "--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(p.probePort)
		}
		p.args = append(p.args, a)
	}
	p.start()
	return p
}

func (p *pod) start() {
	t := p.t
	logFile, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(webhookBin, p.args...) //nolint:gosec // G204: the binary this suite built
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + p.dir}, p.env...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait(); _ = logFile.Close() }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("webhook %v\n--- its log:\n%s", p.args, b)
		}
	})
}

// probeURL is the URL of a container probe, on the local port of the container port it names: a probe
// that names another port, or a path the webhook does not serve, fails here as it would in a cluster.
func (p *pod) probeURL(probe *corev1.Probe) string {
	p.t.Helper()
	c := p.dep.Spec.Template.Spec.Containers[0]
	if probe == nil || probe.HTTPGet == nil {
		p.t.Fatal("the container has no HTTP probe")
	}
	var probes int32
	for _, cp := range c.Ports {
		if cp.Name == "probes" {
			probes = cp.ContainerPort
		}
	}
	if port := probe.HTTPGet.Port; port.String() != "probes" && port.IntValue() != int(probes) {
		p.t.Fatalf("the probe asks port %s, not the webhook's probe port %d", port.String(), probes)
	}
	return "http://127.0.0.1:" + strconv.Itoa(p.probePort) + probe.HTTPGet.Path
}

// waitReady waits for the container's readiness probe to pass, failing early if the process exits,
// then checks its liveness probe passes too.
func (p *pod) waitReady() {
	p.t.Helper()
	c := p.dep.Spec.Template.Spec.Containers[0]
	readiness, liveness := p.probeURL(c.ReadinessProbe), p.probeURL(c.LivenessProbe)
	defer func() {
		if _, err := framework.Get(liveness); err != nil {
			p.t.Fatalf("the liveness probe %s fails on a ready webhook: %v", liveness, err)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			b, _ := os.ReadFile(p.log)
			p.t.Fatalf("the webhook exited before it was ready: %v\n%s", err, b)
		default:
		}
		resp, err := http.Get(readiness) //nolint:noctx // bounded loopback poll
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(p.log)
	p.t.Fatalf("the webhook was not ready within 60s\n%s", b)
}

// stop sends SIGTERM, as the kubelet does, and waits for the process to end (SIGKILL after 20s). It
// stops only the process this pod started.
func (p *pod) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	defer func() { p.cmd = nil }()
	select {
	case exit := <-p.done:
		p.exit = exit // it had ended on its own
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case p.exit = <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		p.exit = <-p.done
	}
}

// syncVolumes writes the current content of the Secret and ConfigMap volumes the way the kubelet's
// atomic writer does: a new timestamped directory, a ..data symlink swapped to it by rename, and the
// visible files as symlinks through ..data.
func (p *pod) syncVolumes() {
	p.t.Helper()
	ctx := context.Background()
	p.generation++
	for _, v := range p.dep.Spec.Template.Spec.Volumes {
		var data map[string][]byte
		switch {
		case v.Secret != nil:
			s, err := kube.CoreV1().Secrets(p.dep.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				p.t.Fatalf("volume %s: %v (a kubelet would not start the pod)", v.Name, err)
			}
			data = s.Data
		case v.ConfigMap != nil:
			cm, err := kube.CoreV1().ConfigMaps(p.dep.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				p.t.Fatalf("volume %s: %v (a kubelet would not start the pod)", v.Name, err)
			}
			data = map[string][]byte{}
			for k, s := range cm.Data {
				data[k] = []byte(s)
			}
		default:
			continue
		}
		dir := p.volumes[v.Name]
		ts := fmt.Sprintf("..%d_%d", time.Now().UnixNano(), p.generation)
		if err := os.MkdirAll(filepath.Join(dir, ts), 0o755); err != nil {
			p.t.Fatal(err)
		}
		for k, b := range data {
			if err := os.WriteFile(filepath.Join(dir, ts, k), b, 0o600); err != nil {
				p.t.Fatal(err)
			}
		}
		old, _ := os.Readlink(filepath.Join(dir, "..data"))
		tmp := filepath.Join(dir, "..data_tmp")
		_ = os.Remove(tmp)
		if err := os.Symlink(ts, tmp); err != nil {
			p.t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			p.t.Fatal(err)
		}
		for k := range data {
			link := filepath.Join(dir, k)
			if _, err := os.Lstat(link); err != nil {
				if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
					p.t.Fatal(err)
				}
			}
		}
		if old != "" && old != ts {
			_ = os.RemoveAll(filepath.Join(dir, old))
		}
	}
}

// serviceAccountKubeconfig writes a kubeconfig with a token of the pod's ServiceAccount (TokenRequest,
// as the kubelet's projected token), so the webhook has exactly the rights the chart's RBAC gives it.
func (p *pod) serviceAccountKubeconfig(ctx context.Context, sa string) string {
	p.t.Helper()
	if sa == "" {
		sa = "default"
	}
	expiry := int64(3600)
	tr, err := kube.CoreV1().ServiceAccounts(p.dep.Namespace).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		p.t.Fatalf("token for ServiceAccount %s/%s: %v", p.dep.Namespace, sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["in-cluster"] = &clientcmdapi.Cluster{Server: restConfig.Host, CertificateAuthorityData: restConfig.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "in-cluster", AuthInfo: "sa", Namespace: p.dep.Namespace}
	cfg.CurrentContext = "sa"
	path := filepath.Join(p.dir, "serviceaccount.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// checkKubeletWouldRun creates a Pod from the Deployment's template with a server-side dry run in its
// namespace, so admission (Pod Security of the namespace's level, which the tests set to restricted)
// judges the pod the ReplicaSet would create.
func checkKubeletWouldRun(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: dep.Name + "-", Namespace: dep.Namespace, Labels: dep.Spec.Template.Labels},
		Spec:       dep.Spec.Template.Spec,
	}
	if _, err := kube.CoreV1().Pods(dep.Namespace).Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("a pod of Deployment %s/%s would be refused: %v", dep.Namespace, dep.Name, err)
	}
}

// restrictedNamespace creates a namespace that enforces the restricted Pod Security level, as
// config/manager/namespace.yaml does.
func restrictedNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
	if _, err := kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// checkServiceSelects fails unless the Service selects the Deployment's pods and targets its https port.
func checkServiceSelects(t *testing.T, svc *corev1.Service, dep *appsv1.Deployment) {
	t.Helper()
	podLabels := dep.Spec.Template.Labels
	for k, v := range svc.Spec.Selector {
		if podLabels[k] != v {
			t.Errorf("Service %s selects %s=%s; the pods are labelled %v", svc.Name, k, v, podLabels)
		}
	}
	for _, sp := range svc.Spec.Ports {
		if sp.Name != "https" {
			continue
		}
		found := false
		for _, cp := range dep.Spec.Template.Spec.Containers[0].Ports {
			found = found || cp.Name == sp.TargetPort.String() || int(cp.ContainerPort) == sp.TargetPort.IntValue()
		}
		if !found {
			t.Errorf("Service %s targets %s, which is no container port", svc.Name, sp.TargetPort.String())
		}
		return
	}
	t.Errorf("Service %s has no https port", svc.Name)
}

// deployment reads the Deployment a release stored.
func deployment(t *testing.T, namespace, name string) *appsv1.Deployment {
	t.Helper()
	d, err := kube.AppsV1().Deployments(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// secretOfType creates or replaces a Secret.
func putSecret(t *testing.T, namespace, name string, typ corev1.SecretType, data map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, Type: typ, Data: data}
	existing, err := kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		existing.Data = data
		_, err = kube.CoreV1().Secrets(namespace).Update(ctx, existing, metav1.UpdateOptions{})
	} else {
		_, err = kube.CoreV1().Secrets(namespace).Create(ctx, s, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}
