package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// Defaults for Config.
const (
	DefaultClusterDomain = "cluster.local"
	DefaultTTL           = 5 * time.Second
	DefaultResolvConf    = "/etc/resolv.conf"
	// systemdResolvConf lists the real upstreams when /etc/resolv.conf points at the
	// systemd-resolved stub.
	systemdResolvConf = "/run/systemd/resolve/resolv.conf"
	forwardTimeout    = 2 * time.Second
	queryTimeout      = 4 * time.Second
	shutdownTimeout   = 5 * time.Second
)

// Config configures a Server.
type Config struct {
	// ClusterDomain is the domain answered from the cluster; DefaultClusterDomain if empty.
	ClusterDomain string
	// Listen are "ip:port" addresses served over both UDP and TCP, e.g. "10.43.0.10:53".
	// Port 0 picks a free port, the same for UDP and TCP (see Server.Addrs).
	Listen []string
	// Upstreams are "ip" or "ip:port" servers for names outside the cluster domain. Empty means
	// the nameservers of ResolvConf, without loopback stubs and the Listen addresses.
	Upstreams []string
	// ResolvConf is read when Upstreams is empty; DefaultResolvConf (falling back to
	// systemd-resolved's upstream list) if empty.
	ResolvConf string
	// TTL of answers; DefaultTTL if zero.
	TTL time.Duration
	// Resolver, if set, replaces forwarding to Upstreams (tests inject faults through it).
	Resolver Resolver
	// Logger; discards if nil.
	Logger *slog.Logger
	// Dynamic, if set, is used to watch VirtualMachines, whose addresses then
	// answer <vm>.<namespace>.vm.<domain>.
	Dynamic dynamic.Interface
}

// vmResource is the VirtualMachine kind that VM names come from.
var vmResource = schema.GroupVersionResource{Group: "compute.strata.io", Version: "v1alpha1", Resource: "virtualmachines"}

// Server is the node's cluster DNS server. Create it with New and start it with Run.
type Server struct {
	zone     Zone
	listen   []string
	client   kubernetes.Interface
	resolver Resolver
	log      *slog.Logger

	ready  chan struct{}
	addrs  []string // set before ready is closed
	synced atomic.Bool
	gen    atomic.Uint64 // bumped by every informer event

	mu       sync.Mutex
	snap     *Snapshot
	snapGen  uint64
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	dynamic  dynamic.Interface
	vms      cache.GenericLister // nil without Dynamic
}

// New validates cfg and prepares a Server that watches Services and EndpointSlices via client.
func New(cfg Config, client kubernetes.Interface) (*Server, error) {
	if client == nil {
		return nil, errors.New("dns: nil Kubernetes client")
	}
	domain := strings.TrimSuffix(cfg.ClusterDomain, ".")
	if domain == "" {
		domain = DefaultClusterDomain
	}
	if _, ok := mdns.IsDomainName(domain); !ok {
		return nil, fmt.Errorf("dns: invalid cluster domain %q", cfg.ClusterDomain)
	}
	if len(cfg.Listen) == 0 {
		return nil, errors.New("dns: no listen address")
	}
	var listenIPs []netip.Addr
	for _, l := range cfg.Listen {
		ap, err := netip.ParseAddrPort(l)
		if err != nil {
			return nil, fmt.Errorf("dns: listen address %q: %w", l, err)
		}
		listenIPs = append(listenIPs, ap.Addr().Unmap())
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second {
		return nil, fmt.Errorf("dns: TTL %s below one second", ttl)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	resolver := cfg.Resolver
	if resolver == nil {
		servers, err := upstreams(cfg, listenIPs, log)
		if err != nil {
			return nil, err
		}
		resolver = &Forwarder{Servers: servers, Timeout: forwardTimeout}
	}
	return &Server{
		zone:     Zone{Domain: domain, TTL: uint32(ttl / time.Second)},
		listen:   cfg.Listen,
		client:   client,
		resolver: resolver,
		log:      log,
		ready:    make(chan struct{}),
		dynamic:  cfg.Dynamic,
	}, nil
}

func upstreams(cfg Config, exclude []netip.Addr, log *slog.Logger) ([]string, error) {
	if len(cfg.Upstreams) > 0 {
		out := make([]string, 0, len(cfg.Upstreams))
		for _, u := range cfg.Upstreams {
			if a, err := netip.ParseAddr(u); err == nil {
				u = net.JoinHostPort(a.String(), "53")
			} else if _, err := netip.ParseAddrPort(u); err != nil {
				return nil, fmt.Errorf("dns: upstream %q is neither ip nor ip:port", u)
			}
			out = append(out, u)
		}
		return out, nil
	}
	paths := []string{cfg.ResolvConf}
	if cfg.ResolvConf == "" {
		paths = []string{DefaultResolvConf, systemdResolvConf}
	}
	for _, p := range paths {
		servers, err := UpstreamsFromResolvConf(p, exclude)
		if err != nil {
			log.Warn("cluster DNS: cannot read upstream resolvers", "path", p, "err", err)
			continue
		}
		if len(servers) > 0 {
			return servers, nil
		}
	}
	// Cluster names still resolve; other names will get SERVFAIL.
	log.Warn("cluster DNS: no usable upstream resolvers; names outside the cluster will fail", "paths", paths)
	return nil, nil
}

// Ready is closed once the server listens on every address and has synced its informers.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound "ip:port" addresses, one per Listen entry; valid once Ready is closed.
// Before that it returns nil.
func (s *Server) Addrs() []string {
	select {
	case <-s.ready:
		return append([]string(nil), s.addrs...)
	default:
		return nil
	}
}

// Run serves DNS until ctx is done, then shuts the servers and informers down. It returns nil
// after a clean shutdown, or the error that stopped a server. Call it once.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactory(s.client, 0)
	defer factory.Shutdown() // runs after cancel: waits for the informer goroutines
	defer cancel()
	svcInformer := factory.Core().V1().Services()
	sliceInformer := factory.Discovery().V1().EndpointSlices()
	bump := func(any) { s.gen.Add(1) }
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    bump,
		UpdateFunc: func(_, obj any) { bump(obj) },
		DeleteFunc: bump,
	}
	for _, inf := range []cache.SharedIndexInformer{svcInformer.Informer(), sliceInformer.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("dns: add informer handler: %w", err)
		}
	}
	s.services = svcInformer.Lister()
	s.slices = sliceInformer.Lister()
	if s.dynamic != nil {
		// Not part of readiness: Services answer without it, and VM names
		// appear once it has synced.
		vmFactory := dynamicinformer.NewDynamicSharedInformerFactory(s.dynamic, 0)
		defer vmFactory.Shutdown()
		vmInformer := vmFactory.ForResource(vmResource)
		if _, err := vmInformer.Informer().AddEventHandler(handler); err != nil {
			return fmt.Errorf("dns: add informer handler: %w", err)
		}
		s.vms = vmInformer.Lister()
		vmFactory.Start(ctx.Done())
	}

	servers, addrs, err := s.bind(ctx)
	if err != nil {
		return err
	}
	s.addrs = addrs

	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	started := make(chan struct{}, len(servers))
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				errc <- fmt.Errorf("dns: serve %s/%s: %w", srv.Net, srvAddr(srv), err)
			}
		}()
	}
	// Every server either starts or fails promptly (its socket is already bound); wait for all
	// so that shutdown never races a server that has not started yet.
	var runErr error
	for range servers {
		select {
		case <-started:
		case err := <-errc:
			runErr = cmp.Or(runErr, err)
		}
	}

	factory.Start(ctx.Done())
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		if runErr != nil {
			return
		}
		for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
			if !ok {
				s.log.Warn("cluster DNS: informer not synced", "type", typ.String())
				return
			}
		}
		s.synced.Store(true)
		s.log.Info("cluster DNS serving", "addrs", addrs, "domain", s.zone.Domain)
		close(s.ready)
	}()

	if runErr == nil {
		select {
		case <-ctx.Done():
		case runErr = <-errc:
		}
	}
	if runErr != nil {
		s.log.Error("cluster DNS stopped", "err", runErr)
	}
	cancel()
	<-syncDone

	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer scancel()
	for _, srv := range servers {
		if err := srv.ShutdownContext(sctx); err != nil {
			// A server that failed on its own is already down.
			s.log.Debug("cluster DNS: shutdown", "err", err)
		}
	}
	wg.Wait()
	return runErr
}

func srvAddr(srv *mdns.Server) string {
	if srv.PacketConn != nil {
		return srv.PacketConn.LocalAddr().String()
	}
	if srv.Listener != nil {
		return srv.Listener.Addr().String()
	}
	return srv.Addr
}

// bind opens a UDP socket and a TCP listener on the same port for every listen address, so
// that resolvers retrying a truncated answer over TCP reach the same server.
func (s *Server) bind(ctx context.Context) ([]*mdns.Server, []string, error) {
	var servers []*mdns.Server
	var addrs []string
	closeAll := func() {
		for _, srv := range servers {
			if srv.PacketConn != nil {
				srv.PacketConn.Close()
			}
			if srv.Listener != nil {
				srv.Listener.Close()
			}
		}
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) { s.serve(ctx, w, r) })
	for _, addr := range s.listen {
		pc, l, err := bindPair(ctx, addr)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		servers = append(servers,
			&mdns.Server{Net: "udp", PacketConn: pc, Handler: h},
			&mdns.Server{Net: "tcp", Listener: l, Handler: h, ReadTimeout: 5 * time.Second})
		addrs = append(addrs, pc.LocalAddr().String())
	}
	return servers, addrs, nil
}

func bindPair(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns: listen address %q: %w", addr, err)
	}
	var lc net.ListenConfig
	var lastErr error
	// With port 0 the UDP port chosen may be taken for TCP; try a few.
	for range 10 {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen udp %s: %w", addr, err)
		}
		tcpAddr := netip.AddrPortFrom(ap.Addr(), uint16(pc.LocalAddr().(*net.UDPAddr).Port))
		l, err := lc.Listen(ctx, "tcp", tcpAddr.String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		lastErr = err
		if ap.Port() != 0 {
			break
		}
	}
	return nil, nil, fmt.Errorf("dns: listen tcp %s: %w", addr, lastErr)
}

// snapshot returns the current view of the cluster, rebuilding it after informer events.
func (s *Server) snapshot() *Snapshot {
	gen := s.gen.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil && s.snapGen == gen {
		return s.snap
	}
	svcs, err := s.services.List(labels.Everything())
	if err != nil {
		s.log.Warn("cluster DNS: list services", "err", err)
	}
	slices, err := s.slices.List(labels.Everything())
	if err != nil {
		s.log.Warn("cluster DNS: list endpointslices", "err", err)
	}
	s.snap = SnapshotFromObjects(uint32(gen), svcs, slices, s.listVMs())
	s.snapGen = gen
	return s.snap
}

// listVMs is every VirtualMachine with an address.
func (s *Server) listVMs() []VM {
	if s.vms == nil {
		return nil
	}
	objs, err := s.vms.List(labels.Everything())
	if err != nil {
		s.log.Warn("cluster DNS: list virtual machines", "err", err)
		return nil
	}
	var vms []VM
	for _, obj := range objs {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		if vm, ok := vmFromObject(u); ok {
			vms = append(vms, vm)
		}
	}
	return vms
}

// vmFromObject reads a VirtualMachine's name and status.ips.
func vmFromObject(u *unstructured.Unstructured) (VM, bool) {
	ips, _, _ := unstructured.NestedStringSlice(u.Object, "status", "ips")
	vm := VM{Namespace: u.GetNamespace(), Name: u.GetName()}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			vm.Addrs = append(vm.Addrs, a.Unmap())
		}
	}
	return vm, len(vm.Addrs) > 0
}

func (s *Server) serve(ctx context.Context, w mdns.ResponseWriter, r *mdns.Msg) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	began := time.Now()
	resp, zone := s.respond(ctx, r)
	observe(zone, resp.Rcode, began)
	if w.LocalAddr().Network() == "udp" {
		resp.Truncate(udpSize(r))
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("cluster DNS: write answer", "err", err)
	}
}

// respond answers r and says from where: the cluster zone or upstream.
func (s *Server) respond(ctx context.Context, r *mdns.Msg) (*mdns.Msg, string) {
	m := new(mdns.Msg)
	if r.Opcode != mdns.OpcodeQuery {
		return m.SetRcode(r, mdns.RcodeNotImplemented), "cluster"
	}
	if len(r.Question) != 1 {
		return m.SetRcode(r, mdns.RcodeFormatError), "cluster"
	}
	q := r.Question[0]
	var snap *Snapshot
	if s.synced.Load() {
		snap = s.snapshot()
	}
	reply := s.zone.Resolve(q, snap)
	if reply.Forward {
		up, err := s.resolver.Exchange(ctx, r)
		if err != nil {
			s.log.Debug("cluster DNS: forward", "err", err)
			return m.SetRcode(r, mdns.RcodeServerFailure), "forwarded"
		}
		up.Id = r.Id
		return up, "forwarded"
	}
	if snap == nil {
		// Not synced yet: better a retry than a wrong NXDOMAIN.
		return m.SetRcode(r, mdns.RcodeServerFailure), "cluster"
	}
	m.SetRcode(r, reply.Rcode)
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Answer, m.Ns, m.Extra = reply.Answer, reply.Ns, reply.Extra
	s.chaseCNAME(ctx, m, q, snap)
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	return m, "cluster"
}

// chaseCNAME appends the addresses an ExternalName target resolves to, so stub resolvers get a
// complete answer in one round trip. A failure leaves the bare CNAME for the client to follow.
func (s *Server) chaseCNAME(ctx context.Context, m *mdns.Msg, q mdns.Question, snap *Snapshot) {
	if len(m.Answer) != 1 || (q.Qtype != mdns.TypeA && q.Qtype != mdns.TypeAAAA) {
		return
	}
	cname, ok := m.Answer[0].(*mdns.CNAME)
	if !ok {
		return
	}
	tq := mdns.Question{Name: cname.Target, Qtype: q.Qtype, Qclass: q.Qclass}
	local := s.zone.Resolve(tq, snap)
	if !local.Forward {
		for _, rr := range local.Answer {
			if _, isCNAME := rr.(*mdns.CNAME); !isCNAME { // one hop only
				m.Answer = append(m.Answer, rr)
			}
		}
		return
	}
	req := new(mdns.Msg)
	req.SetQuestion(cname.Target, q.Qtype)
	up, err := s.resolver.Exchange(ctx, req)
	if err != nil || up.Rcode != mdns.RcodeSuccess {
		return
	}
	m.Answer = append(m.Answer, up.Answer...)
}

func udpSize(r *mdns.Msg) int {
	if opt := r.IsEdns0(); opt != nil && opt.UDPSize() > mdns.MinMsgSize {
		return int(opt.UDPSize())
	}
	return mdns.MinMsgSize
}
