// Package version holds the build's version strings, set by -ldflags.
package version

import "runtime"

// Set at build time with -ldflags "-X github.com/strata-cloud/strata/internal/version.Version=...".
var (
	Version   = "v0.1.0-dev"
	GitCommit = "unknown"
)

// Kubernetes is the version of the embedded upstream Kubernetes.
const Kubernetes = "v1.37.2"

// Info is what `strata version` prints.
type Info struct {
	Strata     string `json:"strata"`
	GitCommit  string `json:"gitCommit"`
	Kubernetes string `json:"kubernetes"`
	Go         string `json:"go"`
	Platform   string `json:"platform"`
}

// Get returns this build's version information.
func Get() Info {
	return Info{
		Strata:     Version,
		GitCommit:  GitCommit,
		Kubernetes: Kubernetes,
		Go:         runtime.Version(),
		Platform:   runtime.GOOS + "/" + runtime.GOARCH,
	}
}
