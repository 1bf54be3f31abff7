package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// netpolPods are a web server, a client that policies will allow and one they will not, all
// labelled netpol=... so that the policies here select nothing else in the namespace; and a
// Service in front of the server, so that policy is also checked after kube-proxy's DNAT.
const netpolPods = `
apiVersion: v1
kind: Pod
metadata: {name: np-server, labels: {netpol: server}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: ` + busyboxImage + `
    imagePullPolicy: Never
    command: [sh, -c, 'mkdir -p /www && echo hello-np > /www/index.html && exec httpd -f -p 80 -h /www']
    ports: [{name: http, containerPort: 80}]
    readinessProbe:
      tcpSocket: {port: 80}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: np-server}
spec:
  selector: {netpol: server}
  ports: [{port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: np-friend, labels: {netpol: friend}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: ` + busyboxImage + `, imagePullPolicy: Never, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: np-stranger, labels: {netpol: stranger}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: ` + busyboxImage + `, imagePullPolicy: Never, command: [sleep, "3600"]}
`

const netpolDenyIngress = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np-deny-ingress}
spec:
  podSelector: {matchLabels: {netpol: server}}
  policyTypes: [Ingress]
`

// netpolAllowFriend allows the friend on the server's named port only.
const netpolAllowFriend = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np-allow-friend}
spec:
  podSelector: {matchLabels: {netpol: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {netpol: friend}}}]
    ports: [{port: http}]
`

const netpolDenyEgress = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np-deny-egress}
spec:
  podSelector: {matchLabels: {netpol: stranger}}
  policyTypes: [Egress]
`

// networkPolicyOnNode checks NetworkPolicy enforcement on a single node, in namespace ns, with
// pods and policies of its own (deleted at the end): deny-all ingress isolates the server (from
// pods, directly and through a Service, but not from its node), an allow-from-label policy
// reopens it for one client only, an egress policy cuts a pod off cluster DNS (on the node),
// and deleting the policies restores everything. It logs how long each change took to be
// enforced, as seen from a pod.
func networkPolicyOnNode(t *testing.T, s *testenv.Server, ns string) {
	s.MustKubectlStdin(netpolPods, "apply", "-n", ns, "-f", "-")
	t.Cleanup(func() {
		s.Kubectl("delete", "-n", ns, "--ignore-not-found", "--wait=false", "networkpolicy/np-deny-ingress",
			"networkpolicy/np-allow-friend", "networkpolicy/np-deny-egress", "service/np-server",
			"pod/np-server", "pod/np-friend", "pod/np-stranger")
	})
	server := readyPod(t, s, ns, "np-server")
	readyPod(t, s, ns, "np-friend")
	readyPod(t, s, ns, "np-stranger")
	direct := "http://" + server.Status.PodIP + "/"
	viaService := "http://np-server:8080/"

	// fetch reports whether client pod reaches url (a dropped SYN runs into the timeout).
	fetch := func(pod, url string) error {
		r := execIn(t, s, ns, pod, "c", "timeout", "2", "wget", "-qO-", url)
		if r.Err != nil {
			return fmt.Errorf("wget %s from %s: %s", url, pod, strings.TrimSpace(r.Stderr))
		}
		if got := strings.TrimSpace(r.Stdout); got != "hello-np" {
			return fmt.Errorf("wget %s from %s = %q", url, pod, got)
		}
		return nil
	}
	lookup := func(pod string) error {
		r := execIn(t, s, ns, pod, "c", "timeout", "3", "nslookup", "kubernetes.default.svc.cluster.local")
		if r.Err != nil {
			return fmt.Errorf("nslookup from %s: %s", pod, strings.TrimSpace(r.Stdout+r.Stderr))
		}
		return nil
	}
	// expect waits until every check passes, and returns how long that took.
	type check struct {
		pod, url string
		reach    bool
	}
	probe := func(c check) error {
		err := fetch(c.pod, c.url)
		if c.reach && err != nil {
			return err
		}
		if !c.reach && err == nil {
			return fmt.Errorf("%s reaches %s, want blocked", c.pod, c.url)
		}
		return nil
	}
	// expect waits until the first check passes (logging how long the change took to show, to
	// within a probe's 2 s timeout), then until all do.
	expect := func(step string, checks ...check) {
		t.Helper()
		began := time.Now()
		testenv.Eventually(t, 30*time.Second, func() error { return probe(checks[0]) })
		t.Logf("%s: seen from a pod after %s", step, time.Since(began).Round(10*time.Millisecond))
		testenv.Eventually(t, 30*time.Second, func() error {
			for _, c := range checks {
				if err := probe(c); err != nil {
					return fmt.Errorf("%s: %w", step, err)
				}
			}
			return nil
		})
	}

	expect("no policy",
		check{"np-friend", direct, true}, check{"np-stranger", direct, true}, check{"np-stranger", viaService, true})
	testenv.Eventually(t, 30*time.Second, func() error { return lookup("np-stranger") })

	s.MustKubectlStdin(netpolDenyIngress, "apply", "-n", ns, "-f", "-")
	expect("deny all ingress",
		check{"np-friend", direct, false}, check{"np-stranger", direct, false}, check{"np-friend", viaService, false})
	// The pod's node (this test runs on it) still reaches it, as upstream allows.
	if _, err := httpGet("http://" + net.JoinHostPort(server.Status.PodIP, "80") + "/"); err != nil {
		t.Errorf("node to isolated pod: %v, want allowed", err)
	}

	s.MustKubectlStdin(netpolAllowFriend, "apply", "-n", ns, "-f", "-")
	expect("allow from netpol=friend",
		check{"np-friend", direct, true}, check{"np-friend", viaService, true},
		check{"np-stranger", direct, false}, check{"np-stranger", viaService, false})

	s.MustKubectlStdin(netpolDenyEgress, "apply", "-n", ns, "-f", "-")
	testenv.Eventually(t, 30*time.Second, func() error {
		if err := lookup("np-stranger"); err == nil {
			return fmt.Errorf("deny egress: np-stranger still resolves names")
		}
		return lookup("np-friend") // not selected: resolves
	})

	s.MustKubectl("delete", "networkpolicy", "-n", ns, "np-deny-ingress", "np-allow-friend", "np-deny-egress")
	expect("policies deleted",
		check{"np-friend", direct, true}, check{"np-stranger", direct, true}, check{"np-stranger", viaService, true})
	testenv.Eventually(t, 30*time.Second, func() error { return lookup("np-stranger") })
}
