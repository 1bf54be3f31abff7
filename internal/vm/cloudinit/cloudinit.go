// Package cloudinit makes the NoCloud seed a VM's cloud-init reads at first
// boot: meta-data (instance-id, local-hostname, public-keys), user-data and
// an optional network-config (version 2), written as an ISO9660 image with
// the volume label "cidata" that the launcher attaches as a read-only disk.
//
// The file contents are rendered by a pure function (Files); WriteISO puts
// them on the image with a pure-Go ISO writer, so no genisoimage is needed.
package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/kdomanski/iso9660"
	"sigs.k8s.io/yaml"
)

// VolumeLabel is the label cloud-init's NoCloud datasource looks for.
const VolumeLabel = "cidata"

// The seed's file names, as NoCloud expects them.
const (
	MetaDataFile      = "meta-data"
	UserDataFile      = "user-data"
	NetworkConfigFile = "network-config"
)

// Seed is what a VM's cloud-init is told.
type Seed struct {
	// InstanceID identifies this instance; cloud-init runs its
	// once-per-instance steps again when it changes. Required.
	InstanceID string
	// Hostname becomes local-hostname. Required.
	Hostname string
	// PublicKeys are SSH public keys (one "type base64 [comment]" line
	// each) installed for the default user.
	PublicKeys []string
	// UserData is passed through as is: "#cloud-config" YAML, a "#!"
	// script, a MIME multipart. Empty means an empty #cloud-config.
	UserData []byte
	// Network, when set, is written as network-config; nil leaves the
	// network to the image's defaults (DHCP on the first NIC).
	Network *Network
}

// Network is a cloud-init network configuration, version 2 (netplan's).
type Network struct {
	Ethernets map[string]Ethernet `json:"ethernets"`
}

// Ethernet configures one interface, named by the Network map key or
// found by Match.
type Ethernet struct {
	Match       *Match       `json:"match,omitempty"`
	SetName     string       `json:"set-name,omitempty"`
	DHCP4       bool         `json:"dhcp4,omitempty"`
	DHCP6       bool         `json:"dhcp6,omitempty"`
	Addresses   []string     `json:"addresses,omitempty"` // CIDR, e.g. 10.0.0.5/24
	Routes      []Route      `json:"routes,omitempty"`
	Nameservers *Nameservers `json:"nameservers,omitempty"`
	MTU         int          `json:"mtu,omitempty"`
}

// Match selects an interface.
type Match struct {
	MACAddress string `json:"macaddress,omitempty"`
	Name       string `json:"name,omitempty"`
}

// Route is a static route; To "0.0.0.0/0" (or "default") is the default.
type Route struct {
	To  string `json:"to"`
	Via string `json:"via"`
}

// Nameservers are DNS settings.
type Nameservers struct {
	Addresses []string `json:"addresses,omitempty"`
	Search    []string `json:"search,omitempty"`
}

// hostnameRE is an RFC 1123 host name (labels of letters, digits, dashes).
var hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)

// Validate reports what makes the seed unusable.
func (s Seed) Validate() error {
	var errs []error
	if strings.TrimSpace(s.InstanceID) == "" || strings.ContainsAny(s.InstanceID, "\n\r") {
		errs = append(errs, errors.New("instance-id must be one non-empty line"))
	}
	if len(s.Hostname) > 253 || !hostnameRE.MatchString(s.Hostname) {
		errs = append(errs, fmt.Errorf("hostname %q is not a valid host name", s.Hostname))
	}
	for i, k := range s.PublicKeys {
		if f := strings.Fields(k); len(f) < 2 || strings.ContainsAny(strings.TrimSpace(k), "\n\r") {
			errs = append(errs, fmt.Errorf("public key %d is not one \"type key [comment]\" line", i))
		}
	}
	if s.Network != nil {
		if len(s.Network.Ethernets) == 0 {
			errs = append(errs, errors.New("network config has no ethernets"))
		}
	}
	return errors.Join(errs...)
}

// metaData is meta-data's layout.
type metaData struct {
	InstanceID    string   `json:"instance-id"`
	LocalHostname string   `json:"local-hostname"`
	PublicKeys    []string `json:"public-keys,omitempty"`
}

// networkConfig is network-config's layout.
type networkConfig struct {
	Version   int                 `json:"version"`
	Ethernets map[string]Ethernet `json:"ethernets"`
}

// Files returns the seed's files by name.
func (s Seed) Files() (map[string][]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("cloud-init seed: %w", err)
	}
	keys := make([]string, 0, len(s.PublicKeys))
	for _, k := range s.PublicKeys {
		keys = append(keys, strings.TrimSpace(k))
	}
	md, err := yaml.Marshal(metaData{InstanceID: s.InstanceID, LocalHostname: s.Hostname, PublicKeys: keys})
	if err != nil {
		return nil, fmt.Errorf("cloud-init meta-data: %w", err)
	}
	ud := s.UserData
	if len(bytes.TrimSpace(ud)) == 0 {
		ud = []byte("#cloud-config\n{}\n")
	}
	files := map[string][]byte{MetaDataFile: md, UserDataFile: ud}
	if s.Network != nil {
		nc, err := yaml.Marshal(networkConfig{Version: 2, Ethernets: s.Network.Ethernets})
		if err != nil {
			return nil, fmt.Errorf("cloud-init network-config: %w", err)
		}
		files[NetworkConfigFile] = nc
	}
	return files, nil
}

// WriteISO writes the seed as an ISO9660 image labelled cidata at path
// (atomically: the file appears whole or not at all).
func WriteISO(path string, s Seed) error {
	files, err := s.Files()
	if err != nil {
		return err
	}
	w, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	defer w.Cleanup()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := w.AddFile(bytes.NewReader(files[n]), n); err != nil {
			return fmt.Errorf("cloud-init seed %s: %w", n, err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	defer os.Remove(tmp.Name())
	werr := w.WriteTo(tmp, VolumeLabel)
	if err := errors.Join(werr, tmp.Chmod(0o644), tmp.Close()); err != nil {
		return fmt.Errorf("cloud-init seed %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cloud-init seed %s: %w", path, err)
	}
	return nil
}
