// Package metadata is the VM metadata service at 169.254.169.254: what a
// guest's cloud-init (or anything else in the guest) asks over HTTP instead
// of reading the NoCloud seed. It speaks the two dialects clouds use, as
// OpenStack Nova serves them:
//
//   - OpenStack: /openstack (versions), /openstack/VERSION/meta_data.json,
//     user_data, network_data.json;
//   - EC2: / (versions), /VERSION/meta-data/ (instance-id, hostname,
//     local-hostname, local-ipv4, mac, ami-launch-index,
//     placement/availability-zone, public-keys/N/openssh-key) and
//     /VERSION/user-data.
//
// VERSION is "latest" or one of the dated versions the listings name; all
// get the same content. Every launcher serves its own VM only (see
// internal/vm/launcher), and the handler answers only requests from that
// VM's address: anything else gets 403, methods other than GET and HEAD
// 405, unknown paths 404.
package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Addr is the well-known metadata address.
var Addr = netip.MustParseAddr("169.254.169.254")

// DefaultAvailabilityZone is the zone a VM reports when none is set
// (Nova's default zone name).
const DefaultAvailabilityZone = "nova"

// Instance is what the service tells one VM.
type Instance struct {
	// UUID is the instance ID (the VirtualMachine's UID). Required.
	UUID string
	// Name is the VM's name; Hostname its host name (default Name).
	Name     string
	Hostname string
	// PublicKeys are SSH public keys, one "type key [comment]" each.
	PublicKeys []string
	// UserData is served as is; nil means none (404, as Nova answers).
	UserData []byte
	// GuestAddr is the VM's IPv4 address: local-ipv4, and the only
	// address whose requests are answered.
	GuestAddr netip.Addr
	// MAC is the VM's MAC address (network_data.json, EC2 mac).
	MAC string
	// MTU of the VM's network, 0 when unknown.
	MTU int
	// DNS servers, for network_data.json's services.
	DNS []netip.Addr
	// ProjectID is the owner's project, left out when empty.
	ProjectID string
	// AvailabilityZone defaults to DefaultAvailabilityZone.
	AvailabilityZone string
}

// OpenStackVersions are the dated versions /openstack lists (Nova's, up to
// the newest cloud-init asks for), before "latest".
var OpenStackVersions = []string{"2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30", "2016-10-06", "2017-02-22", "2018-08-27"}

// EC2Versions are the dated versions / lists, before "latest".
var EC2Versions = []string{"1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01", "2008-09-01", "2009-04-04"}

// node is a file (body) or a directory (kids, listed in order).
type node struct {
	body  []byte
	ctype string
	names []string // listing order; a trailing "/" marks a directory in EC2 listings
	kids  map[string]*node
	list  string // the listing, when not the names one a line
}

func file(ctype string, body []byte) *node { return &node{body: body, ctype: ctype} }

func text(s string) *node { return file("text/plain; charset=utf-8", []byte(s)) }

func dir() *node { return &node{kids: map[string]*node{}} }

// add puts kid under name; shown is how the listing names it.
func (n *node) add(name, shown string, kid *node) *node {
	n.kids[name] = kid
	n.names = append(n.names, shown)
	return n
}

func (n *node) listing() []byte {
	if n.list != "" {
		return []byte(n.list)
	}
	return []byte(strings.Join(n.names, "\n"))
}

// Handler serves inst.
type Handler struct {
	inst Instance
	root *node
	logf func(string, ...any)
}

// NewHandler builds the tree for inst; logf (may be nil) hears about
// every request.
func NewHandler(inst Instance, logf func(string, ...any)) (*Handler, error) {
	if inst.UUID == "" {
		return nil, errors.New("metadata: no instance ID")
	}
	if !inst.GuestAddr.Is4() {
		return nil, fmt.Errorf("metadata: guest address %v is not IPv4", inst.GuestAddr)
	}
	if inst.Hostname == "" {
		inst.Hostname = inst.Name
	}
	if inst.AvailabilityZone == "" {
		inst.AvailabilityZone = DefaultAvailabilityZone
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	root, err := tree(inst)
	if err != nil {
		return nil, err
	}
	return &Handler{inst: inst, root: root, logf: logf}, nil
}

// keyName names the i-th public key (the seed carries keys, not names).
func keyName(i int) string { return fmt.Sprintf("key-%d", i) }

func tree(inst Instance) (*node, error) {
	osVersion, err := openStackVersion(inst)
	if err != nil {
		return nil, err
	}
	ec2Version := ec2Version(inst)

	root := dir()
	for _, v := range append(slices.Clone(EC2Versions), "latest") {
		root.add(v, v, ec2Version)
	}
	osDir := dir()
	for _, v := range append(slices.Clone(OpenStackVersions), "latest") {
		osDir.add(v, v, osVersion)
	}
	// Not in the root listing: EC2 clients read it as versions.
	root.kids["openstack"] = osDir
	return root, nil
}

// openStackMeta is meta_data.json.
type openStackMeta struct {
	UUID             string            `json:"uuid"`
	Name             string            `json:"name"`
	Hostname         string            `json:"hostname"`
	LaunchIndex      int               `json:"launch_index"`
	AvailabilityZone string            `json:"availability_zone"`
	ProjectID        string            `json:"project_id,omitempty"`
	PublicKeys       map[string]string `json:"public_keys,omitempty"`
	Keys             []openStackKey    `json:"keys,omitempty"`
	Meta             map[string]string `json:"meta"`
	Devices          []any             `json:"devices"`
}

type openStackKey struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Data string `json:"data"`
}

// network_data.json's parts (Nova's format).
type networkData struct {
	Links    []networkLink    `json:"links"`
	Networks []networkNet     `json:"networks"`
	Services []networkService `json:"services"`
}

type networkLink struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	MAC  string `json:"ethernet_mac_address,omitempty"`
	MTU  int    `json:"mtu,omitempty"`
}

type networkNet struct {
	ID        string `json:"id"`
	Link      string `json:"link"`
	Type      string `json:"type"`
	NetworkID string `json:"network_id"`
}

type networkService struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

func openStackVersion(inst Instance) (*node, error) {
	meta := openStackMeta{
		UUID: inst.UUID, Name: inst.Name, Hostname: inst.Hostname, AvailabilityZone: inst.AvailabilityZone,
		ProjectID: inst.ProjectID, Meta: map[string]string{}, Devices: []any{},
	}
	for i, k := range inst.PublicKeys {
		if meta.PublicKeys == nil {
			meta.PublicKeys = map[string]string{}
		}
		meta.PublicKeys[keyName(i)] = k
		meta.Keys = append(meta.Keys, openStackKey{Name: keyName(i), Type: "ssh", Data: k})
	}
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	// The guest's one NIC, configured by DHCP (the launcher answers it).
	nd := networkData{
		Links:    []networkLink{{ID: "tap0", Type: "phy", MAC: inst.MAC, MTU: inst.MTU}},
		Networks: []networkNet{{ID: "network0", Link: "tap0", Type: "ipv4_dhcp", NetworkID: "pod"}},
		Services: []networkService{},
	}
	for _, d := range inst.DNS {
		nd.Services = append(nd.Services, networkService{Type: "dns", Address: d.String()})
	}
	netJSON, err := json.Marshal(nd)
	if err != nil {
		return nil, err
	}
	const js = "application/json"
	v := dir()
	v.add("meta_data.json", "meta_data.json", file(js, metaJSON))
	if inst.UserData != nil {
		v.add("user_data", "user_data", file("application/octet-stream", inst.UserData))
	}
	v.add("network_data.json", "network_data.json", file(js, netJSON))
	return v, nil
}

func ec2Version(inst Instance) *node {
	keys := dir()
	var list []string
	for i, k := range inst.PublicKeys {
		keys.add(fmt.Sprint(i), fmt.Sprint(i), dir().add("openssh-key", "openssh-key", text(k+"\n")))
		list = append(list, fmt.Sprintf("%d=%s", i, keyName(i)))
	}
	keys.list = strings.Join(list, "\n")

	md := dir()
	md.add("ami-launch-index", "ami-launch-index", text("0"))
	md.add("hostname", "hostname", text(inst.Hostname))
	md.add("instance-id", "instance-id", text(inst.UUID))
	md.add("local-hostname", "local-hostname", text(inst.Hostname))
	md.add("local-ipv4", "local-ipv4", text(inst.GuestAddr.String()))
	if inst.MAC != "" {
		md.add("mac", "mac", text(inst.MAC))
	}
	md.add("placement", "placement/", dir().add("availability-zone", "availability-zone", text(inst.AvailabilityZone)))
	if len(inst.PublicKeys) > 0 {
		md.add("public-keys", "public-keys/", keys)
	}

	v := dir().add("meta-data", "meta-data/", md)
	if inst.UserData != nil {
		v.add("user-data", "user-data", file("application/octet-stream", inst.UserData))
	}
	return v
}

// lookup finds the node at p ("/a/b", trailing slash or not).
func (h *Handler) lookup(p string) *node {
	n := h.root
	for seg := range strings.SplitSeq(strings.Trim(p, "/"), "/") {
		if seg == "" {
			continue
		}
		if n.kids == nil {
			return nil
		}
		if n = n.kids[seg]; n == nil {
			return nil
		}
	}
	return n
}

// ServeHTTP answers the guest.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status := h.serve(w, r)
	h.logf("metadata: %s %s from %s: %d", r.Method, r.URL.Path, r.RemoteAddr, status)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) int {
	fail := func(code int) int {
		http.Error(w, http.StatusText(code), code)
		return code
	}
	src, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || src.Addr().Unmap() != h.inst.GuestAddr {
		return fail(http.StatusForbidden)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return fail(http.StatusMethodNotAllowed)
	}
	n := h.lookup(r.URL.Path)
	if n == nil {
		return fail(http.StatusNotFound)
	}
	body, ctype := n.body, n.ctype
	if n.kids != nil {
		body, ctype = n.listing(), "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
	return http.StatusOK
}

// Port is where the service listens.
const Port = 80

// Listen opens the service's socket on Addr, port Port (which must be a
// local address), in the calling thread's network namespace.
func Listen() (net.Listener, error) {
	addr := netip.AddrPortFrom(Addr, Port)
	l, err := net.Listen("tcp4", addr.String())
	if err != nil {
		return nil, fmt.Errorf("metadata: listen on %s: %w", addr, err)
	}
	return l, nil
}

// Serve answers on l until ctx is done, then closes it.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metadata: %w", err)
	}
	return nil
}
