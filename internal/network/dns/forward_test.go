package dns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// startUpstream runs a miekg/dns server on 127.0.0.1 (UDP and TCP on one port) answering with
// handler, standing in for the host's resolver.
func startUpstream(t *testing.T, handler mdns.HandlerFunc) string {
	t.Helper()
	pc, l, err := bindPair(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*mdns.Server{
		{Net: "udp", PacketConn: pc, Handler: handler},
		{Net: "tcp", Listener: l, Handler: handler},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// fakeInternet answers A queries for *.example.com with 192.0.2.1; "big.example.com" has 60
// addresses, more than a plain UDP answer holds, so it is truncated over UDP.
func fakeInternet(w mdns.ResponseWriter, r *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(r)
	q := r.Question[0]
	switch {
	case q.Name == "fail.example.com.":
		m.Rcode = mdns.RcodeServerFailure
	case q.Name == "big.example.com." && q.Qtype == mdns.TypeA:
		for i := range 60 {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
				A: net.IPv4(192, 0, 2, byte(i+1))})
		}
	case strings.HasSuffix(q.Name, ".example.com.") && q.Qtype == mdns.TypeA:
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
			A: net.IPv4(192, 0, 2, 1)})
	default:
		m.Rcode = mdns.RcodeNameError
	}
	if w.LocalAddr().Network() == "udp" {
		m.Truncate(udpSize(r))
	}
	_ = w.WriteMsg(m)
}

// deadServer returns a local UDP address nothing answers on: the socket is closed again.
func deadServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestForwarder(t *testing.T) {
	up := startUpstream(t, fakeInternet)
	dead := deadServer(t)
	tests := []struct {
		name     string
		servers  []string
		qname    string
		wantErr  bool
		rcode    int
		nAnswers int
	}{
		{name: "answer", servers: []string{up}, qname: "www.example.com.", nAnswers: 1},
		{name: "NXDOMAIN passes through", servers: []string{up}, qname: "nope.test.", rcode: mdns.RcodeNameError},
		{name: "truncated over UDP, retried over TCP", servers: []string{up}, qname: "big.example.com.", nAnswers: 60},
		{name: "dead server skipped", servers: []string{dead, up}, qname: "www.example.com.", nAnswers: 1},
		{name: "SERVFAIL from the only server", servers: []string{up}, qname: "fail.example.com.", rcode: mdns.RcodeServerFailure},
		{name: "all dead", servers: []string{dead}, qname: "www.example.com.", wantErr: true},
		{name: "none", qname: "www.example.com.", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &Forwarder{Servers: tt.servers, Timeout: time.Second}
			q := new(mdns.Msg)
			q.SetQuestion(tt.qname, mdns.TypeA)
			resp, err := f.Exchange(context.Background(), q)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want error, got %v", resp)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.Id != q.Id || resp.Rcode != tt.rcode || len(resp.Answer) != tt.nAnswers || resp.Truncated {
				t.Fatalf("got id %d rcode %s, %d answers, truncated %v; want id %d rcode %s, %d answers",
					resp.Id, mdns.RcodeToString[resp.Rcode], len(resp.Answer), resp.Truncated, q.Id, mdns.RcodeToString[tt.rcode], tt.nAnswers)
			}
		})
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	tests := []struct {
		name    string
		conf    string
		exclude []string
		want    []string
	}{
		{name: "plain", conf: "nameserver 192.168.1.1\nnameserver 2001:db8::53\nsearch lan\n",
			want: []string{"192.168.1.1:53", "[2001:db8::53]:53"}},
		{name: "systemd stub only", conf: "nameserver 127.0.0.53\noptions edns0 trust-ad\n"},
		{name: "loopback and cluster DNS skipped", conf: "nameserver 127.0.0.1\nnameserver ::1\nnameserver 10.43.0.10\nnameserver 10.0.0.2\n",
			exclude: []string{"10.43.0.10"}, want: []string{"10.0.0.2:53"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte(tt.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			var exclude []netip.Addr
			for _, e := range tt.exclude {
				exclude = append(exclude, netip.MustParseAddr(e))
			}
			got, err := UpstreamsFromResolvConf(path, exclude)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := UpstreamsFromResolvConf(filepath.Join(t.TempDir(), "missing"), nil); err == nil {
		t.Fatal("missing file: want error")
	}
}
