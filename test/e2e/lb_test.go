package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// The multi-node server's LoadBalancer pool: on the test fabric's L2
// (10.99.0.0/24), above its hosts' addresses.
const (
	lbPoolFirst = "10.99.0.200"
	lbPoolLast  = "10.99.0.220"
	lbPoolArg   = "--lb-pool=" + lbPoolFirst + "-" + lbPoolLast
)

// lbWeb is a web Deployment spread over the nodes behind a LoadBalancer
// Service, and a second Service asking for an address outside the pool.
var lbWeb = spreadDeployment("lbweb", "LoadBalancer") + `---
apiVersion: v1
kind: Service
metadata: {name: lboutside}
spec:
  type: LoadBalancer
  loadBalancerIP: 10.99.0.9
  selector: {app: lbweb}
  ports: [{port: 80, targetPort: 80}]
`

// loadBalancerAcrossNodes checks LoadBalancer Services on the multi-node
// cluster (server started with lbPoolArg): a Service gets a pool address
// in status.loadBalancer.ingress, one asking for an address outside the
// pool stays pending with an event saying why, HTTP from client (a test
// host on the fabric) reaches the pods through the address, and when the
// announcing node dies another one answers for it.
//
// victim is made the announcer first (the other nodes are excluded from
// load balancers until it holds the Service's lock), then powerOff must
// power it off for good; the caller's later steps see victim dead.
func loadBalancerAcrossNodes(t *testing.T, s *testenv.Server, ns string, client *testenv.Host, victim string, others []string, powerOff func()) {
	t.Helper()
	began := time.Now()
	s.MustKubectlStdin(lbWeb, "apply", "-n", ns, "-f", "-")
	var vip string
	testenv.Eventually(t, 60*time.Second, func() error {
		vip = s.MustKubectl("get", "service", "lbweb", "-n", ns, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
		if vip == "" {
			return fmt.Errorf("lbweb has no load balancer address yet:\n%s", s.MustKubectl("describe", "service", "lbweb", "-n", ns))
		}
		return nil
	})
	t.Logf("lbweb got %s %s after it was created", vip, time.Since(began).Round(time.Millisecond))
	a, err := netip.ParseAddr(vip)
	if err != nil || a.Less(netip.MustParseAddr(lbPoolFirst)) || netip.MustParseAddr(lbPoolLast).Less(a) {
		t.Fatalf("lbweb's address %q is not in the pool %s-%s", vip, lbPoolFirst, lbPoolLast)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		out := s.MustKubectl("describe", "service", "lboutside", "-n", ns)
		if !strings.Contains(out, "AllocationFailed") || !strings.Contains(out, "10.99.0.9 is not in the address pool") {
			return fmt.Errorf("lboutside's events do not say why it has no address:\n%s", out)
		}
		return nil
	})
	if ip := s.MustKubectl("get", "service", "lboutside", "-n", ns, "-o", "jsonpath={.status.loadBalancer.ingress}"); ip != "" {
		t.Errorf("lboutside got %s, outside the pool", ip)
	}
	s.MustKubectl("rollout", "status", "deployment/lbweb", "-n", ns, "--timeout="+rolloutTimeout)

	url := "http://" + vip + "/"
	get := func(timeout string) error {
		r := client.Run(15*time.Second, "timeout", timeout, hostBusybox, "wget", "-qO-", url)
		if r.Err != nil {
			return fmt.Errorf("GET %s from %s: %s", url, client.Name, r)
		}
		if !strings.HasPrefix(strings.TrimSpace(r.Stdout), "hello-from-lbweb-") {
			return fmt.Errorf("GET %s: %q, want hello-from-lbweb-...", url, r.Stdout)
		}
		return nil
	}
	testenv.Eventually(t, 30*time.Second, func() error { return get("10") })
	t.Logf("HTTP through %s works %s after lbweb was created", vip, time.Since(began).Round(time.Millisecond))

	holder := func() string {
		return s.Kubectl("get", "configmap", "-n", "strata-lb", ns+".lbweb", "-o", "jsonpath={.data.holderIdentity}").Stdout
	}
	// The victim announces: the others step back while it takes over.
	const exclude = "node.kubernetes.io/exclude-from-external-load-balancers"
	for _, n := range others {
		s.MustKubectl("label", "node", n, exclude+"=lb-test", "--overwrite")
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if h := holder(); h != victim {
			return fmt.Errorf("lbweb announced by %q, want %s", h, victim)
		}
		return nil
	})
	for _, n := range others {
		s.MustKubectl("label", "node", n, exclude+"-")
	}
	testenv.Eventually(t, 30*time.Second, func() error { return get("10") })
	victimMAC := neighbourMAC(t, client, vip)
	if victimMAC == "" {
		t.Fatalf("%s has no neighbour entry for %s after HTTP to it", client.Name, vip)
	}
	if h := holder(); h != victim {
		t.Fatalf("lbweb's announcer moved to %q once the other nodes were eligible again; want %s to keep it", h, victim)
	}

	died := time.Now()
	powerOff()
	var takenOver, answered time.Duration
	newHolder := ""
	testenv.Eventually(t, 60*time.Second, func() error {
		if takenOver == 0 {
			if h := holder(); h != "" && h != victim {
				takenOver, newHolder = time.Since(died), h
			}
		}
		if err := get("2"); err != nil {
			return err
		}
		if answered == 0 {
			answered = time.Since(died)
		}
		if takenOver == 0 {
			return fmt.Errorf("HTTP answers but the lock is still %s's", victim)
		}
		return nil
	})
	mac := neighbourMAC(t, client, vip)
	t.Logf("announcing node %s powered off: %s took the lock after %s, HTTP through %s answered again after %s (client's neighbour entry %s -> %s)",
		victim, newHolder, takenOver.Round(100*time.Millisecond), vip, answered.Round(100*time.Millisecond), victimMAC, mac)
	if mac == victimMAC {
		t.Errorf("%s still resolves %s to the dead node's %s", client.Name, vip, victimMAC)
	}
	if out := s.MustKubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=lbweb", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"); !strings.Contains(out, "node "+newHolder+" answers ARP") {
		t.Errorf("lbweb's events do not name the new announcer %s:\n%s", newHolder, out)
	}
}

// neighbourMAC is host's ARP entry for ip ("" without one).
func neighbourMAC(t *testing.T, host *testenv.Host, ip string) string {
	t.Helper()
	r := host.Run(5*time.Second, "ip", "-4", "neigh", "show", ip)
	if r.Err != nil {
		t.Fatalf("ip neigh in %s: %s", host.Name, r)
	}
	f := strings.Fields(r.Stdout)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}
