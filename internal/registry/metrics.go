package registry

import (
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
)

var issuersDesc = prometheus.NewDesc("clustertrust_issuers",
	"OpenIDConnect objects this replica knows, by condition and status (Ready: routed with keys; KeysSynced: last key refresh succeeded).",
	[]string{"condition", "status"}, nil)

// Collector reports how many issuers are Ready and KeysSynced, computed at scrape time from what this
// replica has routed, so it holds on every replica, not only on the one that writes status.
func (r *Reconciler) Collector() prometheus.Collector { return issuersCollector{r} }

type issuersCollector struct{ r *Reconciler }

func (c issuersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- issuersDesc }

func (c issuersCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	r.init()
	r.mu.Lock()
	names := make([]string, 0, len(r.built))
	for name := range r.built {
		names = append(names, name)
	}
	invalid := len(r.invalid)
	r.mu.Unlock()
	counts := map[[2]string]int{
		{v1alpha1.ConditionReady, string(metav1.ConditionTrue)}:       0,
		{v1alpha1.ConditionReady, string(metav1.ConditionFalse)}:      invalid,
		{v1alpha1.ConditionKeysSynced, string(metav1.ConditionTrue)}:  0,
		{v1alpha1.ConditionKeysSynced, string(metav1.ConditionFalse)}: 0,
	}
	for _, name := range names {
		e, ok := r.Router.Get(name)
		if !ok {
			continue
		}
		ks := e.KeyStatus()
		_, conflicting := r.Router.Conflict(name)
		ready := len(ks.Keys) > 0 && !conflicting
		counts[[2]string{v1alpha1.ConditionReady, conditionStatus(ready)}]++
		if ks.Attempted {
			counts[[2]string{v1alpha1.ConditionKeysSynced, conditionStatus(ks.LastError == nil)}]++
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(issuersDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}

func conditionStatus(b bool) string {
	if b {
		return string(metav1.ConditionTrue)
	}
	return string(metav1.ConditionFalse)
}
