package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// The external network of the tenant network test is the test fabric
// itself (flat, through each node's eth0); floating IPs and routers'
// gateways come from this pool, below the LoadBalancer pool.
const (
	extPoolFirst = "10.99.0.100"
	extPoolLast  = "10.99.0.150"
)

// TestTenantNetworks runs tenantNetworks on a cluster of two nodes, each on
// its own test host, with a third host as the outside world.
func TestTenantNetworks(t *testing.T) {
	testenv.RequireHost(t)
	archives := busyboxArchives(t, t.TempDir())
	fabric := testenv.NewFabric(t)
	// Upstream's node failure timeouts, not multinodeServerArgs' short
	// ones: nothing here tests a node's failure, and on a loaded 2-core
	// machine a node's connection to the server has been seen to stall for
	// ~45 s (until HTTP/2's health check redials it), which the short
	// timeouts turn into the eviction of the pods under test.
	srv := testenv.Start(t, testenv.Options{Multinode: true, Args: []string{lbPoolArg}})
	names := []string{"node-1", "node-2"}
	for _, name := range names {
		agent := srv.StartAgent(t, fabric.AddHost(t, name), name)
		for _, a := range archives {
			agent.ImportImage(t, a)
		}
	}
	srv.WaitNodesReady(t, 3*time.Minute, names...)
	tenantNetworks(t, srv.For(t), fabric.AddHost(t, "external"), names)
}

// tenantNetworks checks Neutron's model on the multi-node cluster: two
// projects with the same CIDR are isolated; inside one, a pod and a VM on
// different nodes talk; a security group allowing only tcp/80 lets HTTP in
// and drops ping; a router gives the VM a way out (SNAT) to a host on the
// "external" fabric; a floating IP makes the VM reachable from that host,
// moves to a pod, and stops working when deleted.
func tenantNetworks(t *testing.T, s *testenv.Server, ext *testenv.Host, nodes []string) {
	suffix := randomSuffix(t)
	extNS, pa, pb := "e2e-ext-"+suffix, "e2e-pa-"+suffix, "e2e-pb-"+suffix
	for _, ns := range []string{extNS, pa, pb} {
		s.MustKubectl("create", "namespace", ns)
	}
	t.Cleanup(func() {
		for _, ns := range []string{pa, pb, extNS} {
			s.Kubectl("delete", "namespace", ns, "--wait=false")
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nodes and events at the failure:\n%s\n%s", s.Kubectl("get", "nodes", "-o", "wide").Stdout,
				s.Kubectl("get", "events", "-A", "--sort-by=.lastTimestamp").Stdout)
		}
	})

	// The external host serves a page the VM fetches through its router.
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello-from-outside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	httpd := ext.Command(ctx, hostBusybox, "httpd", "-f", "-p", "8080", "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); _ = httpd.Wait() })

	s.MustKubectlStdin(fmt.Sprintf(`
apiVersion: networking.strata.io/v1alpha1
kind: Network
metadata: {name: public}
spec: {external: true, providerType: flat, physicalInterface: eth0}
---
apiVersion: networking.strata.io/v1alpha1
kind: Subnet
metadata: {name: public-v4}
spec:
  network: public
  cidr: 10.99.0.0/24
  gatewayIP: 10.99.0.1
  enableDHCP: false
  allocationPools: [{start: %s, end: %s}]
`, extPoolFirst, extPoolLast), "apply", "-n", extNS, "-f", "-")

	project := fmt.Sprintf(`
apiVersion: networking.strata.io/v1alpha1
kind: Network
metadata: {name: net1}
spec: {}
---
apiVersion: networking.strata.io/v1alpha1
kind: Subnet
metadata: {name: sub1}
spec: {network: net1, cidr: 10.0.0.0/24}
---
apiVersion: networking.strata.io/v1alpha1
kind: SecurityGroup
metadata: {name: web}
spec:
  rules:
  - {direction: ingress, protocol: tcp, portRangeMin: 80, portRangeMax: 80}
  - {direction: egress}
---
apiVersion: networking.strata.io/v1alpha1
kind: Router
metadata: {name: r1}
spec:
  externalGateway: {network: {namespace: %s, name: public}}
  interfaces: [{subnet: sub1}]
`, extNS)
	s.MustKubectlStdin(project, "apply", "-n", pa, "-f", "-")
	s.MustKubectlStdin(project, "apply", "-n", pb, "-f", "-")

	// Project A: a VM behind the web group, fetching from outside.
	uploadTestVMImage(t, s, pa, "netvm")
	fl := "e2e-net-" + suffix
	t.Cleanup(func() { s.Kubectl("delete", "flavor", fl, "--ignore-not-found") })
	s.MustKubectlStdin(flavor(fl, `{vcpus: 1, ramMiB: 128, diskGiB: 1}`), "create", "-f", "-")
	userData := fmt.Sprintf("#!/bin/sh\n(while true; do if out=$(timeout 3 wget -qO- http://%s:8080/); then echo \"strata-e2e: outbound $out\"; fi; sleep 2; done) &\n", ext.IP)
	s.MustKubectlStdin(fmt.Sprintf(`
apiVersion: networking.strata.io/v1alpha1
kind: Port
metadata: {name: vm1-port}
spec: {network: net1, securityGroups: [web]}
---
apiVersion: compute.strata.io/v1alpha1
kind: VirtualMachine
metadata: {name: vm1}
spec:
  flavor: %s
  image: netvm
  networks: [{port: vm1-port}]
  userData: |
%s`, fl, indent(userData, "    ")), "apply", "-n", pa, "-f", "-")
	var vmIP, vmNode string
	testenv.Eventually(t, 4*time.Minute, func() error {
		if phase := vmField(s, pa, "vm1", "{.status.phase}"); phase != "Running" {
			return fmt.Errorf("VM phase %q: %s", phase, vmField(s, pa, "vm1", "{.status.conditions}"))
		}
		logs := s.Kubectl("logs", "-n", pa, "vm-vm1").Stdout
		if !strings.Contains(logs, testimage.Marker) {
			return fmt.Errorf("no boot marker on the console yet:\n%s", lastBytes(logs, 1024))
		}
		vmIP, vmNode = vmField(s, pa, "vm1", "{.status.ips[0]}"), vmField(s, pa, "vm1", "{.status.nodeName}")
		return nil
	})
	if want := portField(s, pa, "vm1-port", "{.status.fixedIPs[0].ipAddress}"); vmIP != want {
		t.Fatalf("VM IP %q, its port's %q", vmIP, want)
	}
	other := nodes[0]
	if other == vmNode {
		other = nodes[1]
	}
	t.Logf("vm1 %s on %s; pods of project A on %s", vmIP, vmNode, other)

	// A pod of project A on another node, on the same network, open to
	// HTTP (a floating IP comes to it later).
	s.MustKubectlStdin(`
apiVersion: networking.strata.io/v1alpha1
kind: Port
metadata: {name: client-port}
spec: {network: net1, securityGroups: [default, web]}
`, "apply", "-n", pa, "-f", "-")
	s.MustKubectlStdin(tenantPod("client", "", "client-port", other), "apply", "-n", pa, "-f", "-")
	// A pod behind the web group only, beside the VM.
	s.MustKubectlStdin(`
apiVersion: networking.strata.io/v1alpha1
kind: Port
metadata: {name: web2-port}
spec: {network: net1, securityGroups: [web]}
`, "apply", "-n", pa, "-f", "-")
	s.MustKubectlStdin(tenantPod("web2", "", "web2-port", vmNode), "apply", "-n", pa, "-f", "-")
	// Project B: a web pod at the same kind of address, open to all.
	s.MustKubectlStdin(`
apiVersion: networking.strata.io/v1alpha1
kind: Port
metadata: {name: web-port}
spec: {network: net1, fixedIPs: [{ipAddress: 10.0.0.77}], portSecurityEnabled: false}
`, "apply", "-n", pb, "-f", "-")
	s.MustKubectlStdin(tenantPod("web", "", "web-port", vmNode), "apply", "-n", pb, "-f", "-")
	s.MustKubectlStdin(tenantPod("client", "net1", "", other), "apply", "-n", pb, "-f", "-")
	for _, ns := range []string{pa, pb} {
		if r := s.Kubectl("wait", "-n", ns, "--for=condition=Ready", "pod", "--all", "--timeout=150s"); r.Err != nil {
			t.Fatalf("pods of %s not Ready: %s\n%s\n%s\n%s", ns, r, s.Kubectl("get", "nodes,pods,ports", "-n", ns, "-o", "wide").Stdout,
				s.Kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp").Stdout,
				s.Kubectl("get", "events", "-n", "default", "--sort-by=.lastTimestamp").Stdout)
		}
	}

	inPod := func(ns, pod string, cmd ...string) testenv.Result {
		return execIn(t, s, ns, pod, "main", cmd...)
	}
	t.Run("PodAndVMOnOneNetworkTalk", func(t *testing.T) {
		testenv.Eventually(t, 60*time.Second, func() error {
			if r := inPod(pa, "client", "timeout", "5", "wget", "-qO-", "http://"+vmIP+"/"); !strings.Contains(r.Stdout, "strata test vm") {
				return fmt.Errorf("GET http://%s/ from project A's pod: %s", vmIP, r)
			}
			return nil
		})
	})
	t.Run("SecurityGroupAllowsOnlyHTTP", func(t *testing.T) {
		web2 := portField(s, pa, "web2-port", "{.status.fixedIPs[0].ipAddress}")
		testenv.Eventually(t, 60*time.Second, func() error {
			if r := inPod(pa, "client", "timeout", "5", "wget", "-qO-", "http://"+web2+"/"); !strings.Contains(r.Stdout, "hello-from-web2") {
				return fmt.Errorf("GET http://%s/ (a pod in the web group) from project A's pod: %s", web2, r)
			}
			return nil
		})
		// Ping itself goes through: the router's interface answers it.
		if r := inPod(pa, "client", "ping", "-c", "2", "-W", "2", "10.0.0.1"); r.Err != nil {
			t.Errorf("ping of the router's interface 10.0.0.1 from project A's pod: %s", r)
		}
		for what, ip := range map[string]string{"VM": vmIP, "pod": web2} {
			if r := inPod(pa, "client", "ping", "-c", "2", "-W", "2", ip); r.Err == nil {
				t.Errorf("ping of the %s %s passed the web group (tcp/80 only): %s", what, ip, r.Stdout)
			}
		}
	})
	t.Run("ProjectsWithOneCIDRAreIsolated", func(t *testing.T) {
		testenv.Eventually(t, 60*time.Second, func() error {
			if r := inPod(pb, "client", "timeout", "5", "wget", "-qO-", "http://10.0.0.77/"); !strings.Contains(r.Stdout, "hello-from-web") {
				return fmt.Errorf("GET http://10.0.0.77/ from project B's own pod: %s", r)
			}
			return nil
		})
		if r := inPod(pa, "client", "timeout", "5", "wget", "-qO-", "http://10.0.0.77/"); r.Err == nil {
			t.Errorf("project A reached project B's 10.0.0.77: %q", r.Stdout)
		}
		// Nor the pod network's Services: kube-proxy on the node must not
		// translate tenant traffic to a ClusterIP into the pod network.
		if r := inPod(pa, "client", "timeout", "5", "nslookup", "kubernetes.default.svc.cluster.local", "10.43.0.10"); r.Err == nil {
			t.Errorf("project A's pod resolved a name through the cluster DNS Service 10.43.0.10: %q", r.Stdout)
		}
	})
	t.Run("RouterGivesTheVMAWayOut", func(t *testing.T) {
		testenv.Eventually(t, 90*time.Second, func() error {
			logs := s.Kubectl("logs", "-n", pa, "vm-vm1").Stdout
			if !strings.Contains(logs, "strata-e2e: outbound hello-from-outside") {
				return fmt.Errorf("the VM has not fetched http://%s:8080/ yet:\n%s", ext.IP, lastBytes(logs, 1024))
			}
			return nil
		})
	})
	t.Run("FloatingIPReachesTheVMMovesAndGoes", func(t *testing.T) {
		s.MustKubectlStdin(fmt.Sprintf(`
apiVersion: networking.strata.io/v1alpha1
kind: FloatingIP
metadata: {name: fip1}
spec: {network: {namespace: %s, name: public}, port: vm1-port}
`, extNS), "apply", "-n", pa, "-f", "-")
		var fip string
		testenv.Eventually(t, 60*time.Second, func() error {
			fip = fipField(s, pa, "fip1", "{.status.floatingIPAddress}")
			if st := fipField(s, pa, "fip1", "{.status.status}"); fip == "" || st != "ACTIVE" {
				return fmt.Errorf("floating IP %q status %q: %s", fip, st, fipField(s, pa, "fip1", "{.status.conditions}"))
			}
			return nil
		})
		fromOutside := func(want string) func() error {
			return func() error {
				r := ext.Run(10*time.Second, "timeout", "5", hostBusybox, "wget", "-qO-", "http://"+fip+"/")
				if !strings.Contains(r.Stdout, want) {
					return fmt.Errorf("GET http://%s/ from %s: %s", fip, ext.Name, r)
				}
				return nil
			}
		}
		testenv.Eventually(t, 60*time.Second, fromOutside("strata test vm"))
		t.Logf("floating IP %s reaches vm1", fip)
		s.MustKubectl("patch", "floatingip", "fip1", "-n", pa, "--type=merge", "-p", `{"spec":{"port":"client-port"}}`)
		testenv.Eventually(t, 60*time.Second, fromOutside("hello-from-client"))
		s.MustKubectl("delete", "floatingip", "fip1", "-n", pa)
		testenv.Eventually(t, 30*time.Second, func() error {
			if r := ext.Run(10*time.Second, "timeout", "3", hostBusybox, "wget", "-qO-", "http://"+fip+"/"); r.Err == nil {
				return fmt.Errorf("deleted floating IP %s still answers: %q", fip, r.Stdout)
			}
			return nil
		})
	})
	s.MustKubectl("delete", "vm", "vm1", "-n", pa, "--timeout=3m")
}

// tenantPod is a web pod on a tenant network (network: a Port is made for
// it) or on an existing Port, on node. Pods on tenant networks have no
// HTTP probes: the node has no address on those networks.
func tenantPod(name, network, port, node string) string {
	ann := "networking.strata.io/network: " + network
	if port != "" {
		ann = "networking.strata.io/port: " + port
	}
	return fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata:
  name: %s
  annotations: {%s}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    command: [sh, -c, 'mkdir -p /www && echo hello-from-%s > /www/index.html && exec httpd -f -p 80 -h /www']
`, name, ann, node, busyboxImage, name)
}

func portField(s *testenv.Server, ns, name, template string) string {
	return strings.TrimSpace(s.Kubectl("get", "port", name, "-n", ns, "-o", "jsonpath="+template).Stdout)
}

func fipField(s *testenv.Server, ns, name, template string) string {
	return strings.TrimSpace(s.Kubectl("get", "floatingip", name, "-n", ns, "-o", "jsonpath="+template).Stdout)
}

func indent(text, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimSuffix(text, "\n"), "\n", "\n"+prefix) + "\n"
}
