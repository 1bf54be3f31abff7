package kube

import (
	"flag"
	"fmt"
	"strconv"

	"k8s.io/klog/v2"
)

// ConfigureLogging sets up klog, which every upstream component logs
// through, once and before any component starts (setting it later races
// with their loggers). Upstream components are chatty at info level, so by
// default only their errors reach stderr; verbosity > 0 shows their info
// logs at that klog level.
func ConfigureLogging(verbosity int) error {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	threshold := "ERROR"
	if verbosity > 0 {
		threshold = "INFO"
	}
	for name, value := range map[string]string{
		"logtostderr":                      "true",
		"legacy_stderr_threshold_behavior": "false",
		"stderrthreshold":                  threshold,
		"v":                                strconv.Itoa(max(verbosity-1, 0)),
	} {
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("configure klog %s: %w", name, err)
		}
	}
	return nil
}
