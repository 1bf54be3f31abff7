package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// NodeName is name, or this host's lower-cased hostname when name is empty.
func NodeName(name string) (string, error) {
	if name != "" {
		return name, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("node name: %w (set --node-name)", err)
	}
	return strings.ToLower(host), nil
}

// HostBinaries finds what every node needs from its host: this executable
// (it is also containerd, the shim and the CNI plugins) and runc.
func HostBinaries() (self, runc string, err error) {
	if self, err = os.Executable(); err != nil {
		return "", "", err
	}
	if runc, err = exec.LookPath("runc"); err != nil {
		return "", "", errors.New("runc not found on PATH: install it (apt-get install runc)")
	}
	return self, runc, nil
}
