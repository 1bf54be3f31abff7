package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// The multi-node tests run a control-plane-only server and three agents,
// each on its own test host (a network namespace on the test fabric, with
// its own mount namespace, data dir and kubelet cgroup root), joined with
// a bootstrap token as a real machine would join.

// Short, documented failure timeouts: a node silent for 30 s is NotReady
// and its pods are evicted 10 s later (upstream: 50 s and 5 minutes). Not
// shorter: a node renews its lease every 10 s, and a loaded 2-core machine
// can miss one.
var multinodeServerArgs = []string{"--node-monitor-grace-period=30s", "--pod-eviction-timeout=10s", lbPoolArg}

// everyNode runs a web server on every node: the clients and targets of the
// cross-node tests.
const everyNode = `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everynode}
spec:
  selector: {matchLabels: {app: everynode}}
  template:
    metadata: {labels: {app: everynode}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: ` + busyboxImage + `
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www']
`

// spreadDeployment is a web Deployment of 3 named name (its pods labelled
// app=name) spread over the nodes (best effort, so that pods can still be
// placed when a node is gone), behind a Service of the given type.
func spreadDeployment(name, serviceType string) string {
	return strings.ReplaceAll(strings.ReplaceAll(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME}
spec:
  replicas: 3
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: NAME}}}
      containers:
      - name: web
        image: `+busyboxImage+`
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www']
        readinessProbe:
          httpGet: {path: /, port: 80}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: NAME}
spec:
  type: TYPE
  selector: {app: NAME}
  ports: [{port: 80, targetPort: 80}]
`, "NAME", name), "TYPE", serviceType)
}

// spreadWeb is the web Deployment spread over the nodes, behind a NodePort.
var spreadWeb = spreadDeployment("web", "NodePort")

type podList struct {
	Items []nodePod `json:"items"`
}

func listPods(t *testing.T, s *testenv.Server, ns, selector string) []nodePod {
	t.Helper()
	out := s.MustKubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json")
	var l podList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("decode pods: %v", err)
	}
	var live []nodePod
	for _, p := range l.Items {
		if p.Metadata.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	return live
}

func TestMultiNode(t *testing.T) {
	testenv.RequireHost(t)
	archives := busyboxArchives(t, t.TempDir())
	began := time.Now()
	fabric := testenv.NewFabric(t)
	srv := testenv.Start(t, testenv.Options{Multinode: true, Args: multinodeServerArgs})
	names := []string{"node-1", "node-2", "node-3"}
	agents := map[string]*testenv.Agent{}
	for _, name := range names {
		agents[name] = srv.StartAgent(t, fabric.AddHost(t, name), name)
	}
	srv.WaitNodesReady(t, 3*time.Minute, names...)
	t.Logf("3 nodes Ready after %s", time.Since(began).Round(time.Millisecond))
	for _, name := range names {
		for _, a := range archives {
			agents[name].ImportImage(t, a)
		}
	}
	ns := newNamespace(t, srv)
	srv.MustKubectlStdin(everyNode, "apply", "-n", ns, "-f", "-")
	srv.MustKubectlStdin(spreadWeb, "apply", "-n", ns, "-f", "-")

	step := func(name string, fn func(t *testing.T, s *testenv.Server)) bool {
		return t.Run(name, func(t *testing.T) {
			stepBegan := time.Now()
			fn(t, srv.For(t))
			t.Logf("%s took %s", name, time.Since(stepBegan).Round(time.Millisecond))
		})
	}
	everyNodePods := func(t *testing.T, s *testenv.Server) map[string]nodePod {
		t.Helper()
		byNode := map[string]nodePod{}
		testenv.Eventually(t, podTimeout, func() error {
			clear(byNode)
			for _, p := range listPods(t, s, ns, "app=everynode") {
				if !p.ready() || p.Status.PodIP == "" {
					return fmt.Errorf("daemon pod not ready: %s", p.describe())
				}
				if _, dup := byNode[p.Spec.NodeName]; dup {
					return fmt.Errorf("two daemon pods on %s", p.Spec.NodeName)
				}
				byNode[p.Spec.NodeName] = p
			}
			if len(byNode) != len(names) {
				return fmt.Errorf("daemon pods on %d nodes, want %d", len(byNode), len(names))
			}
			return nil
		})
		return byNode
	}

	daemons := step("DaemonSetOnePodPerNode", func(t *testing.T, s *testenv.Server) {
		byNode := everyNodePods(t, s)
		for _, n := range names {
			if _, ok := byNode[n]; !ok {
				t.Errorf("no daemon pod on %s", n)
			}
		}
	})

	if daemons {
		step("PodToPodAcrossNodes", func(t *testing.T, s *testenv.Server) {
			byNode := everyNodePods(t, s)
			for _, from := range names {
				for _, to := range names {
					if from == to {
						continue
					}
					src, dst := byNode[from], byNode[to]
					want := "hello-from-" + dst.Metadata.Name
					testenv.Eventually(t, 30*time.Second, func() error {
						r := execIn(t, s, ns, src.Metadata.Name, "web", "timeout", "10", "wget", "-qO-", "http://"+dst.Status.PodIP+"/")
						if r.Err != nil {
							return fmt.Errorf("%s (%s) -> %s (%s): %s", from, src.Status.PodIP, to, dst.Status.PodIP, r)
						}
						if got := strings.TrimSpace(r.Stdout); got != want {
							return fmt.Errorf("%s -> %s = %q, want %q", from, to, got, want)
						}
						return nil
					})
				}
			}
		})

		step("ServiceAndDNSFromEveryNode", func(t *testing.T, s *testenv.Server) {
			s.MustKubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout="+rolloutTimeout)
			for node, p := range everyNodePods(t, s) {
				testenv.Eventually(t, 30*time.Second, func() error {
					r := execIn(t, s, ns, p.Metadata.Name, "web", "timeout", "10", "wget", "-qO-", "http://web."+ns+".svc.cluster.local/")
					if r.Err != nil {
						return fmt.Errorf("from %s: %s", node, r)
					}
					if !strings.HasPrefix(strings.TrimSpace(r.Stdout), "hello-from-web-") {
						return fmt.Errorf("from %s: %q, want hello-from-web-...", node, r.Stdout)
					}
					return nil
				})
			}
		})
	}

	step("NodePortOnEveryNode", func(t *testing.T, s *testenv.Server) {
		client := fabric.AddHost(t, "client")
		port := s.MustKubectl("get", "service", "web", "-n", ns, "-o", "jsonpath={.spec.ports[0].nodePort}")
		for _, name := range names {
			url := "http://" + net.JoinHostPort(agents[name].Host.IP.String(), port) + "/"
			testenv.Eventually(t, 30*time.Second, func() error {
				r := client.Run(15*time.Second, "timeout", "10", hostBusybox, "wget", "-qO-", url)
				if r.Err != nil {
					return fmt.Errorf("NodePort of %s: %s", name, r)
				}
				if !strings.HasPrefix(strings.TrimSpace(r.Stdout), "hello-from-web-") {
					return fmt.Errorf("NodePort of %s: %q", name, r.Stdout)
				}
				return nil
			})
		}
	})

	step("WrongTokenOrCAHashRefused", func(t *testing.T, s *testenv.Server) {
		badToken := s.StartAgent(t, fabric.AddHost(t, "badtoken"), "bad-token", "--token", "abcdef.0123456789abcdef")
		badHash := s.StartAgent(t, fabric.AddHost(t, "badhash"), "bad-hash", "--ca-hash", "sha256:"+strings.Repeat("0", 64))
		for _, c := range []struct {
			a    *testenv.Agent
			want string
		}{{badToken, "token abcdef is unknown"}, {badHash, "not --ca-hash"}} {
			testenv.Eventually(t, 30*time.Second, func() error {
				log := c.a.Log()
				if n := strings.Count(log, c.want); n < 2 {
					return fmt.Errorf("agent %s: %q logged %d times, want refusals retried with backoff; log:\n%s", c.a.Name, c.want, n, lastBytes(log, 2048))
				}
				return nil
			})
			if done, err := c.a.Exited(); done {
				t.Errorf("agent %s exited (%v); a refused join should keep retrying", c.a.Name, err)
			}
			c.a.Kill()
		}
		out := s.MustKubectl("get", "nodes", "-o", "name")
		if strings.Contains(out, "bad-") {
			t.Errorf("a refused agent registered a node:\n%s", out)
		}
	})

	step("DuplicateNodeNameRefused", func(t *testing.T, s *testenv.Server) {
		dup := s.StartAgent(t, fabric.AddHost(t, "dup"), "node-1")
		testenv.Eventually(t, 60*time.Second, func() error {
			if done, _ := dup.Exited(); !done {
				return fmt.Errorf("second agent named node-1 still running; log:\n%s", lastBytes(dup.Log(), 2048))
			}
			return nil
		})
		if _, err := dup.Exited(); err == nil {
			t.Errorf("second agent named node-1 exited with status 0")
		}
		if log := dup.Log(); !strings.Contains(log, `a node named "node-1" is running`) {
			t.Errorf("second agent's log does not say why it stopped:\n%s", lastBytes(log, 2048))
		}
		s.WaitNodesReady(t, 30*time.Second, "node-1")
	})

	step("AgentRestartKeepsContainers", func(t *testing.T, s *testenv.Server) {
		before := everyNodePods(t, s)["node-1"]
		a := agents["node-1"]
		// The join tokens are gone (expired): a node that joined before
		// restarts on the CA and credentials it keeps.
		s.MustKubectl("delete", "secrets", "-n", "kube-system", "--field-selector", "type=bootstrap.kubernetes.io/token")
		if err := a.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		since := time.Now()
		testenv.Eventually(t, 90*time.Second, func() error {
			r := s.Kubectl("get", "lease", "-n", "kube-node-lease", "node-1", "-o", "jsonpath={.spec.renewTime}")
			renewed, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(r.Stdout))
			if err != nil || renewed.Before(since.Add(-time.Second)) {
				return fmt.Errorf("node-1 has not renewed its lease since the restart (%s)", r.Stdout)
			}
			return nil
		})
		// Long enough for the kubelet to have synced every pod once.
		time.Sleep(15 * time.Second)
		after := everyNodePods(t, s)["node-1"]
		if after.Metadata.Name != before.Metadata.Name {
			t.Fatalf("daemon pod on node-1 replaced: %s -> %s", before.Metadata.Name, after.Metadata.Name)
		}
		if b, a := before.Status.ContainerStatuses[0], after.Status.ContainerStatuses[0]; b.ContainerID != a.ContainerID || b.RestartCount != a.RestartCount {
			t.Errorf("container after agent restart: %s (restarts %d), before: %s (restarts %d)", a.ContainerID, a.RestartCount, b.ContainerID, b.RestartCount)
		}
	})

	// Before the drain, which would evict the VM.
	step("VirtualMachineMigrates", func(t *testing.T, s *testenv.Server) {
		vmMigrates(t, s, ns, names)
	})

	step("DrainMovesPods", func(t *testing.T, s *testenv.Server) {
		s.MustKubectl("drain", "node-3", "--ignore-daemonsets", "--delete-emptydir-data", "--grace-period=1", "--timeout=90s")
		defer s.MustKubectl("uncordon", "node-3")
		s.MustKubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout="+rolloutTimeout)
		testenv.Eventually(t, podTimeout, func() error {
			pods := listPods(t, s, ns, "app=web")
			ready := 0
			for _, p := range pods {
				if p.Spec.NodeName == "node-3" {
					return fmt.Errorf("web pod %s still on drained node-3", p.Metadata.Name)
				}
				if p.ready() {
					ready++
				}
			}
			if ready != 3 {
				return fmt.Errorf("%d ready web pods, want 3", ready)
			}
			return nil
		})
		if out := s.MustKubectl("get", "node", "node-3", "-o", "jsonpath={.spec.unschedulable}"); out != "true" {
			t.Errorf("drained node-3 unschedulable = %q, want true", out)
		}
	})

	step("DeadNodeReschedules", func(t *testing.T, s *testenv.Server) {
		// The victim is the node with the most web pods.
		byNode := map[string]int{}
		for _, p := range listPods(t, s, ns, "app=web") {
			byNode[p.Spec.NodeName]++
		}
		victim := ""
		for _, n := range names {
			if byNode[n] > byNode[victim] {
				victim = n
			}
		}
		if victim == "" {
			t.Fatalf("no web pod on any node:\n%s", s.MustKubectl("get", "pods", "-n", ns, "-o", "wide"))
		}
		t.Logf("%d web pods on %s before it dies", byNode[victim], victim)
		// A LoadBalancer Service announced by the victim moves to another
		// node when it dies (the power-off happens inside).
		var others []string
		for _, n := range names {
			if n != victim {
				others = append(others, n)
			}
		}
		var died time.Time
		loadBalancerAcrossNodes(t, s, ns, fabric.AddHost(t, "lbclient"), victim, others, func() {
			died = time.Now()
			agents[victim].PowerOff(t)
		})
		testenv.Eventually(t, 90*time.Second, func() error {
			out := s.MustKubectl("get", "node", victim, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			if out == "True" {
				return fmt.Errorf("%s still Ready", victim)
			}
			return nil
		})
		t.Logf("%s NotReady %s after it died", victim, time.Since(died).Round(time.Second))
		testenv.Eventually(t, 3*time.Minute, func() error {
			ready := 0
			for _, p := range listPods(t, s, ns, "app=web") {
				if p.Spec.NodeName == victim {
					return fmt.Errorf("web pod %s still bound to dead %s", p.Metadata.Name, victim)
				}
				if p.ready() {
					ready++
				}
			}
			if ready != 3 {
				return fmt.Errorf("%d ready web pods on the live nodes, want 3", ready)
			}
			return nil
		})
		t.Logf("web pods Ready on the live nodes %s after %s died", time.Since(died).Round(time.Second), victim)
	})
	t.Logf("TestMultiNode took %s", time.Since(began).Round(time.Millisecond))
}
