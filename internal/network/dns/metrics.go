package dns

import (
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Metrics of the node's DNS server, in the process's Kubernetes metrics
// registry: /metrics of the kubelet (every node) and of the API server
// (when the node runs inside `strata server`) show them.
var (
	queries = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "strata", Subsystem: "dns", Name: "requests_total",
		Help:           "DNS requests answered by the node's cluster DNS, by zone (cluster or forwarded) and response code.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"zone", "rcode"})
	latency = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: "strata", Subsystem: "dns", Name: "request_duration_seconds",
		Help:           "Time to answer a DNS request, by zone (cluster or forwarded).",
		Buckets:        []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 4},
		StabilityLevel: metrics.ALPHA,
	}, []string{"zone"})
	registerMetrics sync.Once
)

func observe(zone string, rcode int, began time.Time) {
	registerMetrics.Do(func() { legacyregistry.MustRegister(queries, latency) })
	name := mdns.RcodeToString[rcode]
	if name == "" {
		name = "OTHER"
	}
	queries.WithLabelValues(zone, name).Inc()
	latency.WithLabelValues(zone).Observe(time.Since(began).Seconds())
}
