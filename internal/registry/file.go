package registry

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/apis/apiserver"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/convert"
)

// maxManifestBytes bounds one manifest file; an OpenIDConnect with a large CA bundle and static keys is
// a few tens of KiB.
const maxManifestBytes = 4 << 20

// FileSource is the Objects of `webhook serve --source=file`: OpenIDConnect manifests read from the
// top level of a directory (*.yaml, *.yml, *.json; several documents per file allowed; hidden files,
// such as the ..data links of a mounted ConfigMap, skipped). It needs no Kubernetes API, which is how
// clustertrust runs as a static pod beside a kube-apiserver that cannot depend on itself.
//
// A document may also be a kube-apiserver AuthenticationConfiguration (apiserver.config.k8s.io), so a
// static-pod deployment can share one file with kube-apiserver: its jwt authenticators are converted
// into OpenIDConnect objects by internal/convert (named after their issuers) and then admitted like any
// other object. What the conversion cannot carry over is logged at V(1), once for each new content of
// the file; it is not an error.
//
// Objects from files pass the same rules as objects from the API: each is checked against the generated
// CRD itself (config/crd, embedded), its OpenAPI schema and its CEL rules, after the CRD's defaults are
// applied, and an invalid one is refused with the message the API server gives for it. Unlike the API
// server, which prunes unknown fields silently unless the client asks for strict validation, a file with
// an unknown field is refused, with the error kubectl's default strict validation gets.
//
// The directory is reloaded when it changes (fsnotify, with a periodic rescan as a fallback). A file that
// does not parse, holds something other than an OpenIDConnect, repeats a name another file declares, or
// holds an object the CRD refuses is refused as a whole: the objects it held at its last good load stay
// routed, and the refusal is logged and counted (clustertrust_config_invalid_files). Removing a file
// removes its objects. Status lives in memory; a change of the Ready condition is logged.
type FileSource struct {
	Dir        string
	Reconciler *Reconciler
	Log        logr.Logger
	// Rescan is how often the directory is read even without a change notification; 0 means a minute.
	Rescan time.Duration
	// Debounce gathers a burst of change notifications into one reload; 0 means 200ms.
	Debounce time.Duration

	// noted is, per file, the conversion notes last logged; reload's own (only Start's goroutine runs it).
	noted map[string]string

	mu      sync.Mutex
	good    map[string][]*v1alpha1.OpenIDConnect // file -> objects at its last good load
	objects map[string]*v1alpha1.OpenIDConnect   // name -> the object served, with its status
	loaded  atomic.Bool

	metrics fileMetrics
}

type fileMetrics struct {
	reloads     *prometheus.CounterVec
	invalid     prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// Collectors returns the source's metrics, for registration.
func (s *FileSource) Collectors() []prometheus.Collector {
	s.initMetrics()
	return []prometheus.Collector{s.metrics.reloads, s.metrics.invalid, s.metrics.lastSuccess}
}

func (s *FileSource) initMetrics() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metrics.reloads != nil {
		return
	}
	s.metrics = fileMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustertrust_config_reloads_total",
			Help: "Reloads of --config-dir, by result: ok (every file valid) or invalid_files (some kept their last good objects).",
		}, []string{"result"}),
		invalid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clustertrust_config_invalid_files",
			Help: "Files in --config-dir refused at the last reload; their last good objects are still served.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clustertrust_config_last_reload_success_timestamp_seconds",
			Help: "When --config-dir was last reloaded with every file valid.",
		}),
	}
}

// Get returns a copy of the object called name.
func (s *FileSource) Get(_ context.Context, name string) (*v1alpha1.OpenIDConnect, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, ok := s.objects[name]
	if !ok {
		return nil, apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("openidconnects").GroupResource(), name)
	}
	return obj.DeepCopy(), nil
}

// UpdateStatus keeps obj's status in memory and logs a change of its Ready condition.
func (s *FileSource) UpdateStatus(_ context.Context, obj *v1alpha1.OpenIDConnect) error {
	s.mu.Lock()
	current, ok := s.objects[obj.Name]
	if !ok || current.Generation != obj.Generation {
		s.mu.Unlock()
		return nil // removed or changed meanwhile; the next reconcile reports on the new version
	}
	before := readyCondition(current)
	current.Status = *obj.Status.DeepCopy()
	after := readyCondition(current)
	s.mu.Unlock()
	if readyChanged(before, after) {
		s.Log.Info("Issuer status", "openidconnect", obj.Name, "ready", after.Status, "reason", after.Reason, "message", after.Message)
	}
	return nil
}

// List returns copies of the objects served, sorted by name.
func (s *FileSource) List() []v1alpha1.OpenIDConnect {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]v1alpha1.OpenIDConnect, 0, len(s.objects))
	for _, obj := range s.objects {
		out = append(out, *obj.DeepCopy())
	}
	slices.SortFunc(out, func(a, b v1alpha1.OpenIDConnect) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ReadyChecker passes once the directory has been loaded and every valid object is routed and has had
// its first key load attempt; like the API source's, it then stays passed.
func (s *FileSource) ReadyChecker() func(*http.Request) error {
	return func(*http.Request) error {
		if s.Reconciler.ready.Load() {
			return nil
		}
		if !s.loaded.Load() {
			return errors.New("--config-dir has not been loaded yet")
		}
		return s.Reconciler.latchReady(s.Reconciler.unready(s.List()))
	}
}

// Start loads the directory, then reloads it on change and reconciles key refreshes until ctx is done.
// It is the only caller of the reconciler, so reconciles never run concurrently.
func (s *FileSource) Start(ctx context.Context) error {
	s.initMetrics()
	s.Reconciler.init()
	rescan, debounce := s.Rescan, s.Debounce
	if rescan <= 0 {
		rescan = time.Minute
	}
	if debounce <= 0 {
		debounce = 200 * time.Millisecond
	}
	var changes <-chan fsnotify.Event
	var watchErrors <-chan error
	if w, err := fsnotify.NewWatcher(); err != nil {
		s.Log.Error(err, "Could not watch --config-dir; relying on the periodic rescan", "interval", rescan)
	} else {
		defer func() { _ = w.Close() }()
		if err := w.Add(s.Dir); err != nil {
			s.Log.Error(err, "Could not watch --config-dir; relying on the periodic rescan", "interval", rescan)
		}
		changes, watchErrors = w.Events, w.Errors
	}

	s.reload(ctx)
	s.loaded.Store(true)
	ticker := time.NewTicker(rescan)
	defer ticker.Stop()
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
			timer.Reset(debounce)
		case err := <-watchErrors:
			s.Log.Error(err, "Watching --config-dir failed; the periodic rescan continues")
		case <-timer.C:
			s.reload(ctx)
		case <-ticker.C:
			s.reload(ctx)
		case ev := <-s.Reconciler.events:
			s.reconcile(ctx, ev.Object.GetName())
		}
	}
}

// reload reads the directory, swaps in the new set of objects and reconciles every name that was or is
// served.
func (s *FileSource) reload(ctx context.Context) {
	files, err := manifestFiles(s.Dir)
	if err != nil {
		s.Log.Error(err, "Could not read --config-dir; keeping the objects loaded before")
		s.metrics.reloads.WithLabelValues("invalid_files").Inc()
		return
	}
	// Parse and validate (CEL included) before taking the lock that Get and List wait on.
	type parsed struct {
		objs  []*v1alpha1.OpenIDConnect
		notes []convert.Note
		err   error
	}
	results := make([]parsed, len(files))
	for i, file := range files {
		results[i].objs, results[i].notes, results[i].err = parseManifestFile(file)
	}
	s.mu.Lock()
	if s.good == nil {
		s.good = map[string][]*v1alpha1.OpenIDConnect{}
		s.objects = map[string]*v1alpha1.OpenIDConnect{}
	}
	owner := map[string]string{} // name -> file declaring it
	next := map[string]*v1alpha1.OpenIDConnect{}
	good := map[string][]*v1alpha1.OpenIDConnect{}
	invalid := 0
	for i, file := range files {
		objs, err := results[i].objs, results[i].err
		for _, obj := range objs {
			if other, taken := owner[obj.Name]; taken && err == nil {
				err = fmt.Errorf("OpenIDConnect %q is also declared in %s", obj.Name, filepath.Base(other))
			}
		}
		if err != nil {
			invalid++
			objs = s.good[file]
			s.Log.Error(err, "Refusing an invalid file in --config-dir; its last good objects stay", "file", file, "kept", len(objs))
		}
		if len(objs) > 0 || err == nil {
			good[file] = objs
		}
		for _, obj := range objs {
			if _, taken := owner[obj.Name]; taken {
				continue // a kept object whose name a valid file now claims: the valid file wins
			}
			owner[obj.Name] = file
			next[obj.Name] = s.carryOver(obj)
		}
	}
	names := make([]string, 0, len(next)+len(s.objects))
	for name := range s.objects {
		names = append(names, name)
	}
	for name := range next {
		if _, ok := s.objects[name]; !ok {
			names = append(names, name)
		}
	}
	s.good, s.objects = good, next
	s.mu.Unlock()

	s.metrics.invalid.Set(float64(invalid))
	if invalid == 0 {
		s.metrics.reloads.WithLabelValues("ok").Inc()
		s.metrics.lastSuccess.SetToCurrentTime()
	} else {
		s.metrics.reloads.WithLabelValues("invalid_files").Inc()
	}
	noted := map[string]string{}
	for i, file := range files {
		if results[i].err != nil || len(results[i].notes) == 0 {
			continue
		}
		var text []string
		for _, n := range results[i].notes {
			text = append(text, n.String())
		}
		noted[file] = strings.Join(text, "\n")
		if s.noted[file] == noted[file] {
			continue // logged when this content was first loaded
		}
		for _, n := range text {
			s.Log.V(1).Info("Not carried over from an AuthenticationConfiguration", "file", file, "note", n)
		}
	}
	s.noted = noted
	slices.Sort(names)
	for _, name := range names {
		s.reconcile(ctx, name)
	}
	s.Log.V(1).Info("Loaded --config-dir", "files", len(files), "invalidFiles", invalid, "issuers", len(next))
}

// carryOver gives a freshly parsed object the identity of the one it replaces: the same UID and creation
// time (so conflict resolution keeps its order), its status, and a generation that moves only when the
// spec changed. Callers hold s.mu.
func (s *FileSource) carryOver(obj *v1alpha1.OpenIDConnect) *v1alpha1.OpenIDConnect {
	old, ok := s.objects[obj.Name]
	if !ok {
		sum := sha256.Sum256([]byte(s.Dir + "\x00" + obj.Name))
		obj.UID = types.UID("file-" + hex.EncodeToString(sum[:8]))
		// Files have no creation order: every object gets the same (zero) creation time, so of two
		// conflicting objects the one whose name sorts first wins, on every replica, after every
		// restart and whatever order the files were written in.
		obj.CreationTimestamp = metav1.Time{}
		obj.Generation = 1
		return obj
	}
	obj.UID, obj.CreationTimestamp, obj.Status = old.UID, old.CreationTimestamp, old.Status
	obj.Generation = old.Generation
	if !equality.Semantic.DeepEqual(obj.Spec, old.Spec) {
		obj.Generation++
	}
	return obj
}

// Load reads the directory once, as each reload does (the same parsing, validation, whole-file refusal
// and duplicate rule), without watching it and without a Reconciler: for `webhook explain`, which must
// see the objects the webhook would serve.
func (s *FileSource) Load(ctx context.Context) {
	s.initMetrics()
	s.reload(ctx)
}

func (s *FileSource) reconcile(ctx context.Context, name string) {
	if s.Reconciler == nil {
		return // Load
	}
	if _, err := s.Reconciler.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: name}}); err != nil {
		s.Log.Error(err, "Could not reconcile", "openidconnect", name)
	}
}

// manifestFiles lists the regular files (after following links) at the top level of dir that may hold
// manifests, sorted by name.
func manifestFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		switch strings.ToLower(filepath.Ext(name)) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		files = append(files, path)
	}
	return files, nil
}

// parseManifestFile reads every OpenIDConnect in a file, with the notes of the AuthenticationConfigurations
// it converted. Any error refuses the whole file.
func parseManifestFile(path string) ([]*v1alpha1.OpenIDConnect, []convert.Note, error) {
	f, err := os.Open(path) //nolint:gosec // G304: reading the directory the operator named is the point
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > maxManifestBytes {
		return nil, nil, fmt.Errorf("%s is larger than %d bytes", filepath.Base(path), maxManifestBytes)
	}
	return parseManifests(data)
}

// ParseManifests decodes one or more OpenIDConnect documents (YAML separated by ---, or JSON) and admits
// each as the API server admits a create of it with kubectl's strict field validation (see crdValidator):
// an unknown field is refused, the CRD's defaults are applied, status is dropped, and the object must
// pass the CRD's schema and CEL rules, the error then being the API server's own, such as
// `OpenIDConnect.authentication.clustertrust.io "hub" is invalid: spec.discoveryURL: Invalid value: ...`.
// A file also may not hold another kind, a namespace, a document without a name, a name twice or a
// repeated key, each an error naming the document or the object. Any error refuses every document.
//
// A document may instead be a kube-apiserver AuthenticationConfiguration: its jwt authenticators are
// converted (convert.FromAuthenticationConfiguration, which also refuses what kube-apiserver would)
// and each resulting object is admitted as above, an error naming the document and the authenticator.
func ParseManifests(data []byte) ([]*v1alpha1.OpenIDConnect, error) {
	objs, _, err := parseManifests(data)
	return objs, err
}

// parseManifests is ParseManifests, also returning the notes of the conversions.
func parseManifests(data []byte) ([]*v1alpha1.OpenIDConnect, []convert.Note, error) {
	validator, err := openIDConnectValidator()
	if err != nil {
		return nil, nil, err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*v1alpha1.OpenIDConnect
	var notes []convert.Note
	seen := map[string]bool{}
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		// The API server decodes JSON; YAML becomes JSON as kubectl converts it, refusing a repeated key.
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", doc, err)
		}
		u := &unstructured.Unstructured{}
		if err := utiljson.Unmarshal(js, &u.Object); err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if convert.IsAuthenticationConfiguration(u.GroupVersionKind()) {
			converted, docNotes, err := admitAuthenticationConfiguration(validator, raw, seen)
			if err != nil {
				return nil, nil, fmt.Errorf("document %d: %w", doc, err)
			}
			objs, notes = append(objs, converted...), append(notes, docNotes...)
			continue
		}
		if u.GetAPIVersion() != v1alpha1.GroupVersion.String() || u.GetKind() != "OpenIDConnect" {
			return nil, nil, fmt.Errorf("document %d: is %s %s, want %s OpenIDConnect (or an %s %s)", doc, u.GetAPIVersion(), u.GetKind(), v1alpha1.GroupVersion, apiserver.GroupName, convert.Kind)
		}
		name := u.GetName()
		switch {
		case name == "":
			return nil, nil, fmt.Errorf("document %d: metadata.name is required", doc)
		case u.GetNamespace() != "":
			// The API server would drop it silently; in a file it suggests a copy of the wrong manifest.
			return nil, nil, fmt.Errorf("OpenIDConnect %q: is cluster-scoped, so metadata.namespace must be empty", name)
		}
		obj, err := admitManifest(validator, u, seen)
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, obj)
	}
	return objs, notes, nil
}

// admitAuthenticationConfiguration converts an AuthenticationConfiguration document and admits each
// resulting object.
func admitAuthenticationConfiguration(validator *crdValidator, raw []byte, seen map[string]bool) ([]*v1alpha1.OpenIDConnect, []convert.Note, error) {
	converted, notes, err := convert.FromAuthenticationConfiguration(raw)
	if err != nil {
		return nil, nil, err
	}
	objs := make([]*v1alpha1.OpenIDConnect, 0, len(converted))
	for i := range converted {
		m, err := convert.Manifest(&converted[i])
		if err == nil {
			var obj *v1alpha1.OpenIDConnect
			if obj, err = admitManifest(validator, &unstructured.Unstructured{Object: m}, seen); err == nil {
				objs = append(objs, obj)
				continue
			}
		}
		return nil, nil, fmt.Errorf("%s jwt[%d] (%s): %w", convert.Kind, i, converted[i].Spec.IssuerURL, err)
	}
	return objs, notes, nil
}

// admitManifest admits one named, cluster-scoped OpenIDConnect manifest whose name seen does not hold
// yet, and adds the name to seen.
func admitManifest(validator *crdValidator, u *unstructured.Unstructured, seen map[string]bool) (*v1alpha1.OpenIDConnect, error) {
	name := u.GetName()
	if seen[name] {
		return nil, fmt.Errorf("OpenIDConnect %q is declared twice", name)
	}
	seen[name] = true
	if err := validator.admit(context.Background(), u); err != nil {
		if apierrors.IsInvalid(err) {
			return nil, err // the message names the object already
		}
		return nil, fmt.Errorf("OpenIDConnect %q: %w", name, err)
	}
	var obj v1alpha1.OpenIDConnect
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &obj, true); err != nil {
		return nil, fmt.Errorf("OpenIDConnect %q: %w", name, err)
	}
	if _, err := ToConfig(&obj); err != nil {
		return nil, fmt.Errorf("OpenIDConnect %q: %w", name, err)
	}
	return &obj, nil
}

// stripComments drops YAML comment lines, so a document of only comments counts as empty.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}
