// Package helperbin carries small helper executables inside the strata
// binary, when `make build` put them there: containerd's runc shim
// (cmd/strata-shim), the CNI plugin (cmd/strata-cni) and the VM launcher
// (cmd/strata-launcher). The first two run once per pod or more; as copies
// of the whole strata binary each would run all of Kubernetes' package
// initialisation (~100 MB and a noticeable pause per exec), as themselves a
// few MB and milliseconds. The launcher goes into the launcher image each
// node builds, where a few MB beat the whole strata binary. Without them
// (plain `go build`), strata serves all three roles itself.
package helperbin

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed payload
var payload embed.FS

// The helpers' file names.
const (
	Shim     = "containerd-shim-runc-v2" // containerd derives it from io.containerd.runc.v2
	CNI      = "strata-cni"
	Launcher = "strata-launcher"
)

// Get returns the embedded executable name, or false when this build has none.
func Get(name string) ([]byte, bool) {
	data, err := fs.ReadFile(payload, "payload/"+name)
	if err != nil || len(data) == 0 {
		return nil, false
	}
	return data, true
}

// Install writes the embedded executable name into dir, once per content
// (NAME-HASH: a running helper's file is never replaced), and returns its
// path; or fallback when this build embeds none.
func Install(dir, name, fallback string) (string, error) {
	data, ok := Get(name)
	if !ok {
		return fallback, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	path := filepath.Join(dir, name+"-"+hex.EncodeToString(sum[:6]))
	if st, err := os.Stat(path); err == nil && st.Size() == int64(len(data)) {
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o755)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("install %s: %w", name, err)
	}
	return path, nil
}
