package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/strata-cloud/strata/internal/storage/ociimage"
	"github.com/strata-cloud/strata/internal/testenv"
)

// The node tests run one server with its node agent (containerd, kubelet,
// pod network) and real containers from a busybox image built from the
// host's static busybox and imported with `strata image import`, so they
// need no registry. Only one agent-backed server can run on a host, so all
// node scenarios are subtests of TestNode, run in order.

const (
	busyboxImage   = "docker.io/library/busybox:e2e"
	busyboxImageV2 = "docker.io/library/busybox:e2e-v2"
	// Pushed to the server's registry, never imported: the node pulls it
	// through its mirror. .invalid never resolves, so only the mirror can
	// serve it.
	pushedImage = "registry.invalid/strata-e2e/pushed:1"
	// A registry on a closed loopback port: the pull fails fast and no
	// traffic leaves this machine (a docker.io name would look up DNS).
	missingImage = "127.0.0.1:1/strata-e2e/nope:1"
	hostBusybox  = "/bin/busybox"

	podTimeout     = 90 * time.Second
	rolloutTimeout = "80s" // below testenv.DefaultCommandTimeout
)

// webDeployment serves hello-from-<pod name> on port 80 from each pod.
// terminationGracePeriodSeconds is short because httpd and sleep as PID 1
// ignore SIGTERM.
const webDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxSurge: "100%", maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: ` + busyboxImage + `
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www']
        ports: [{containerPort: 80}]
        readinessProbe:
          httpGet: {path: /, port: 80}
          periodSeconds: 1
`

// webServices front the web pods: a ClusterIP Service, a sticky one
// (session affinity), a headless one and a NodePort.
const webServices = `
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-nodeport}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
`

const loggerPod = `
apiVersion: v1
kind: Pod
metadata: {name: logger}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: logger
    image: ` + busyboxImage + `
    imagePullPolicy: Never
    command: [sh, -c, 'echo marker-123; exec sleep 3600']
`

// volumesPod mounts a ConfigMap, a Secret and an emptyDir that two
// containers share: the writer writes into it, the reader reads.
const volumesPod = `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello-configmap}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cret-value}
---
apiVersion: v1
kind: Pod
metadata: {name: volumes}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: settings, configMap: {name: settings}}
  - {name: creds, secret: {secretName: creds}}
  - {name: scratch, emptyDir: {}}
  containers:
  - name: writer
    image: ` + busyboxImage + `
    imagePullPolicy: Never
    command: [sh, -c, 'echo from-writer > /scratch/shared; exec sleep 3600']
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  - name: reader
    image: ` + busyboxImage + `
    imagePullPolicy: Never
    command: [sleep, "3600"]
    volumeMounts:
    - {name: settings, mountPath: /etc/settings}
    - {name: creds, mountPath: /etc/creds}
    - {name: scratch, mountPath: /scratch}
`

// livenessPod passes its liveness probe for 5 s, then fails it; a
// restarted container starts with a fresh /tmp and passes again for 5 s.
const livenessPod = `
apiVersion: v1
kind: Pod
metadata: {name: liveness}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: probed
    image: ` + busyboxImage + `
    imagePullPolicy: Never
    command: [sh, -c, 'echo probed-started; sleep 5; touch /tmp/dead; exec sleep 3600']
    livenessProbe:
      exec: {command: [sh, -c, 'test ! -f /tmp/dead']}
      periodSeconds: 2
      failureThreshold: 1
`

// echoerPod answers each line on its stdin; stdinOnce: the first attach
// that closes stdin ends it.
const echoerPod = `
apiVersion: v1
kind: Pod
metadata: {name: echoer}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - name: echoer
    image: ` + busyboxImage + `
    imagePullPolicy: Never
    stdin: true
    stdinOnce: true
    command: [sh, -c, 'while read l; do echo got-$l; done']
`

const missingImagePod = `
apiVersion: v1
kind: Pod
metadata: {name: nope}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: nope
    image: ` + missingImage + `
    imagePullPolicy: IfNotPresent
`

// pushedPod prints the marker file that only the pushed image has.
const pushedPod = `
apiVersion: v1
kind: Pod
metadata: {name: pushed}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: pushed
    image: ` + pushedImage + `
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'cat /pushed-marker; exec sleep 3600']
`

type containerStatus struct {
	Name         string `json:"name"`
	Ready        bool   `json:"ready"`
	RestartCount int    `json:"restartCount"`
	ContainerID  string `json:"containerID"`
	Image        string `json:"image"`
	State        struct {
		Waiting *struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"waiting"`
		Running *struct {
			StartedAt string `json:"startedAt"`
		} `json:"running"`
		Terminated *struct {
			Reason   string `json:"reason"`
			ExitCode int    `json:"exitCode"`
		} `json:"terminated"`
	} `json:"state"`
	LastState struct {
		Terminated *struct {
			Reason   string `json:"reason"`
			ExitCode int    `json:"exitCode"`
		} `json:"terminated"`
	} `json:"lastState"`
}

// nodePod is the part of a pod the node tests read.
type nodePod struct {
	Metadata struct {
		Name              string  `json:"name"`
		DeletionTimestamp *string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		NodeName   string `json:"nodeName"`
		Containers []struct {
			Name  string `json:"name"`
			Image string `json:"image"`
			Env   []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"env"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase      string `json:"phase"`
		PodIP      string `json:"podIP"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		ContainerStatuses []containerStatus `json:"containerStatuses"`
	} `json:"status"`
}

func (p nodePod) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// describe is a one-line summary for error messages.
func (p nodePod) describe() string {
	var cs []string
	for _, c := range p.Status.ContainerStatuses {
		state := "?"
		switch {
		case c.State.Running != nil:
			state = "running"
		case c.State.Waiting != nil:
			state = "waiting " + c.State.Waiting.Reason + ": " + c.State.Waiting.Message
		case c.State.Terminated != nil:
			state = fmt.Sprintf("terminated %s (%d)", c.State.Terminated.Reason, c.State.Terminated.ExitCode)
		}
		cs = append(cs, fmt.Sprintf("%s %s restarts=%d", c.Name, state, c.RestartCount))
	}
	return fmt.Sprintf("%s phase=%s ready=%v ip=%s [%s]", p.Metadata.Name, p.Status.Phase, p.ready(), p.Status.PodIP, strings.Join(cs, "; "))
}

func getPod(t *testing.T, s *testenv.Server, ns, name string) nodePod {
	t.Helper()
	var p nodePod
	getJSON(t, s, &p, "pod", name, "-n", ns)
	return p
}

// readyPod waits until the pod is Ready and returns it.
func readyPod(t *testing.T, s *testenv.Server, ns, name string) nodePod {
	t.Helper()
	var p nodePod
	testenv.Eventually(t, podTimeout, func() error {
		p = getPod(t, s, ns, name)
		if !p.ready() {
			return fmt.Errorf("pod not Ready: %s", p.describe())
		}
		return nil
	})
	return p
}

// liveWebPods returns the Ready, not terminating pods of the web Deployment.
func liveWebPods(t *testing.T, s *testenv.Server, ns string) []nodePod {
	t.Helper()
	var pods list[nodePod]
	getJSON(t, s, &pods, "pods", "-n", ns, "-l", "app=web")
	var live []nodePod
	for _, p := range pods.Items {
		if p.Metadata.DeletionTimestamp == nil && p.ready() {
			live = append(live, p)
		}
	}
	return live
}

// waitWebPods waits until exactly 3 web pods are live and all match ok.
func waitWebPods(t *testing.T, s *testenv.Server, ns string, ok func(nodePod) error) []nodePod {
	t.Helper()
	var live []nodePod
	testenv.Eventually(t, podTimeout, func() error {
		live = liveWebPods(t, s, ns)
		if len(live) != 3 {
			var d []string
			for _, p := range live {
				d = append(d, p.describe())
			}
			return fmt.Errorf("%d live web pods, want 3: %v", len(live), d)
		}
		for _, p := range live {
			if err := ok(p); err != nil {
				return fmt.Errorf("%s: %w", p.Metadata.Name, err)
			}
		}
		return nil
	})
	return live
}

func execIn(t *testing.T, s *testenv.Server, ns, pod, container string, cmd ...string) testenv.Result {
	t.Helper()
	return s.Kubectl(append([]string{"exec", "-n", ns, pod, "-c", container, "--"}, cmd...)...)
}

// httpGet fetches url from the test process (the host), with a short
// timeout.
func httpGet(url string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// busyboxArchives builds the test image from the host's static busybox and
// writes it under both tags (two archives) into dir.
func busyboxArchives(t *testing.T, dir string) []string {
	t.Helper()
	if _, err := os.Stat(hostBusybox); err != nil {
		if testenv.InCI() {
			t.Fatalf("%s is missing: install busybox-static (hack/install-deps.sh)", hostBusybox)
		}
		t.Skipf("%s is missing: install busybox-static (hack/install-deps.sh)", hostBusybox)
	}
	img, err := ociimage.Busybox(hostBusybox)
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("busybox image: %v (install busybox-static: hack/install-deps.sh)", err)
		}
		t.Skipf("busybox image: %v (install busybox-static: hack/install-deps.sh)", err)
	}
	// The second is another image (its own ID), as a new release would be:
	// the runtime reports an image by ID, so one ID under two tags would
	// show a pod of either tag running the same one.
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Env = append(cfg.Config.Env, "BUSYBOX_E2E=v2")
	v2, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for i, c := range []struct {
		ref string
		img v1.Image
	}{{busyboxImage, img}, {busyboxImageV2, v2}} {
		path := filepath.Join(dir, fmt.Sprintf("busybox-%d.tar", i))
		if err := ociimage.WriteTarball(path, c.ref, c.img); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// pushedArchive writes pushedImage to dir: the busybox image with a layer
// holding /pushed-marker, whose random content it returns.
func pushedArchive(t *testing.T, dir string) (path, marker string) {
	t.Helper()
	img, err := ociimage.Busybox(hostBusybox)
	if err != nil {
		t.Fatal(err) // busyboxArchives already skipped or failed
	}
	marker = "pushed-" + randomSuffix(t)
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "pushed-marker", Mode: 0o644, Size: int64(len(marker) + 1), Typeflag: tar.TypeReg})
	tw.Write([]byte(marker + "\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.OCILayer}); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "pushed.tar")
	if err := ociimage.WriteTarball(path, pushedImage, img); err != nil {
		t.Fatal(err)
	}
	return path, marker
}

// registryRequest sends an empty request to the server's registry with
// the cluster CA trusted and cert (may be nil) as the client certificate,
// and returns the status and body.
func registryRequest(t *testing.T, s *testenv.Server, cert *tls.Certificate, method, path string) (int, string) {
	t.Helper()
	kc, err := testenv.LoadKubeconfig(s.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(kc.CAData)
	cfg := &tls.Config{RootCAs: pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	req, err := http.NewRequest(method, s.RegistryURL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body)
}

var forwardingLine = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 80`)

func TestNode(t *testing.T) {
	testenv.RequireHost(t)
	archives := busyboxArchives(t, t.TempDir())
	pushed, marker := pushedArchive(t, t.TempDir())
	began := time.Now()
	srv := testenv.Start(t, testenv.Options{WithAgent: true})
	for _, a := range archives {
		srv.ImportImage(a)
	}
	pushBegan := time.Now()
	pushOutput := srv.PushImage(pushed)
	t.Logf("strata image push took %s", time.Since(pushBegan).Round(time.Millisecond))
	ns := newNamespace(t, srv)
	// Everything starts at once; the subtests wait for what they check.
	srv.MustKubectlStdin(webDeployment, "apply", "-n", ns, "-f", "-")
	srv.MustKubectlStdin(webServices, "apply", "-n", ns, "-f", "-")
	for _, manifest := range []string{loggerPod, volumesPod, livenessPod, echoerPod, missingImagePod, pushedPod} {
		srv.MustKubectlStdin(manifest, "apply", "-n", ns, "-f", "-")
	}
	t.Logf("server, node and workloads created after %s", time.Since(began).Round(time.Millisecond))

	// Subtests that depend on an earlier one stop at its failure.
	step := func(name string, fn func(t *testing.T, s *testenv.Server)) bool {
		return t.Run(name, func(t *testing.T) {
			stepBegan := time.Now()
			fn(t, srv.For(t))
			t.Logf("%s took %s", name, time.Since(stepBegan).Round(time.Millisecond))
		})
	}

	deployed := step("DeploymentBecomesReady", func(t *testing.T, s *testenv.Server) {
		s.MustKubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout="+rolloutTimeout)
		pods := waitWebPods(t, s, ns, func(p nodePod) error {
			if p.Status.PodIP == "" {
				return fmt.Errorf("no pod IP")
			}
			return nil
		})
		for _, p := range pods {
			if p.Spec.NodeName == "" {
				t.Errorf("pod %s has no node", p.Metadata.Name)
			}
		}
	})

	if deployed {
		step("PodToPodAndHostToPod", func(t *testing.T, s *testenv.Server) {
			pods := liveWebPods(t, s, ns)
			if len(pods) < 2 {
				t.Fatalf("%d live web pods, want at least 2", len(pods))
			}
			from, to := pods[0], pods[1]
			want := "hello-from-" + to.Metadata.Name
			testenv.Eventually(t, 30*time.Second, func() error {
				// Not wget -T: Debian's static busybox wget segfaults with it.
				r := execIn(t, s, ns, from.Metadata.Name, "web", "timeout", "10", "wget", "-qO-", "http://"+to.Status.PodIP+"/")
				if r.Err != nil {
					return fmt.Errorf("wget from %s to %s: %s", from.Metadata.Name, to.Status.PodIP, r)
				}
				if got := strings.TrimSpace(r.Stdout); got != want {
					return fmt.Errorf("wget from %s to %s = %q, want %q", from.Metadata.Name, to.Status.PodIP, got, want)
				}
				return nil
			})
			// The host (this test) reaches a pod IP too.
			testenv.Eventually(t, 30*time.Second, func() error {
				body, err := httpGet("http://" + net.JoinHostPort(from.Status.PodIP, "80") + "/")
				if err != nil {
					return err
				}
				if got, want := strings.TrimSpace(body), "hello-from-"+from.Metadata.Name; got != want {
					return fmt.Errorf("host GET %s = %q, want %q", from.Status.PodIP, got, want)
				}
				return nil
			})
		})

		step("ServicesAndDNS", func(t *testing.T, s *testenv.Server) {
			readyPod(t, s, ns, "logger")
			fetch := func(url string) (string, error) {
				r := execIn(t, s, ns, "logger", "logger", "timeout", "10", "wget", "-qO-", url)
				if r.Err != nil {
					return "", fmt.Errorf("wget %s from a pod: %s", url, r)
				}
				return strings.TrimSpace(r.Stdout), nil
			}
			// The Service by its full name, its short name (the pod's
			// search domains) and its ClusterIP.
			clusterIP := s.MustKubectl("get", "service", "web", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
			for _, url := range []string{"http://web." + ns + ".svc.cluster.local/", "http://web/", "http://" + clusterIP + "/"} {
				testenv.Eventually(t, 30*time.Second, func() error {
					body, err := fetch(url)
					if err != nil {
						return err
					}
					if !strings.HasPrefix(body, "hello-from-web-") {
						return fmt.Errorf("GET %s = %q, want hello-from-web-...", url, body)
					}
					return nil
				})
			}
			// Session affinity: one client, one backend.
			first := ""
			for i := range 6 {
				body, err := fetch("http://web-sticky:8080/")
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = body
				} else if body != first {
					t.Errorf("sessionAffinity ClientIP: request %d answered by %q, the first by %q", i, body, first)
				}
			}
			// A headless Service resolves to every ready pod.
			pods := liveWebPods(t, s, ns)
			testenv.Eventually(t, 30*time.Second, func() error {
				r := execIn(t, s, ns, "logger", "logger", "nslookup", "web-headless."+ns+".svc.cluster.local")
				if r.Err != nil {
					return fmt.Errorf("nslookup: %s", r)
				}
				for _, p := range pods {
					if !strings.Contains(r.Stdout, p.Status.PodIP) {
						return fmt.Errorf("headless lookup lacks %s (%s):\n%s", p.Status.PodIP, p.Metadata.Name, r.Stdout)
					}
				}
				return nil
			})
			// The pod's resolv.conf points at the cluster DNS Service.
			if r := execIn(t, s, ns, "logger", "logger", "cat", "/etc/resolv.conf"); r.Err != nil || !strings.Contains(r.Stdout, "nameserver 10.43.0.10") || !strings.Contains(r.Stdout, "search "+ns+".svc.cluster.local") {
				t.Errorf("pod resolv.conf: %s", r)
			}
		})

		step("NodePortFromAnotherHost", func(t *testing.T, s *testenv.Server) {
			fabric := testenv.NewFabric(t)
			client := fabric.AddHost(t, "client")
			nodePort := s.MustKubectl("get", "service", "web-nodeport", "-n", ns, "-o", "jsonpath={.spec.ports[0].nodePort}")
			nodeIP := s.MustKubectl("get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
			if ip := net.ParseIP(nodeIP); ip == nil || ip.IsLoopback() {
				t.Fatalf("node InternalIP %q: want a routable address for NodePorts", nodeIP)
			}
			url := "http://" + net.JoinHostPort(nodeIP, nodePort) + "/"
			testenv.Eventually(t, 30*time.Second, func() error {
				r := client.Run(15*time.Second, "timeout", "10", hostBusybox, "wget", "-qO-", url)
				if r.Err != nil {
					return fmt.Errorf("GET %s from test host %s: %s", url, client.IP, r)
				}
				if body := strings.TrimSpace(r.Stdout); !strings.HasPrefix(body, "hello-from-web-") {
					return fmt.Errorf("GET %s = %q, want hello-from-web-...", url, body)
				}
				return nil
			})
		})

		step("PortForward", func(t *testing.T, s *testenv.Server) {
			pods := liveWebPods(t, s, ns)
			if len(pods) == 0 {
				t.Fatal("no live web pod")
			}
			target := pods[0].Metadata.Name
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := s.KubectlClient().Command(ctx, "port-forward", "-n", ns, "pod/"+target, ":80", "--address", "127.0.0.1")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cancel()
				_ = cmd.Wait()
			}()
			port := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					if m := forwardingLine.FindStringSubmatch(sc.Text()); m != nil {
						port <- m[1]
						break
					}
				}
				_, _ = io.Copy(io.Discard, stdout)
			}()
			var local string
			select {
			case local = <-port:
			case <-time.After(30 * time.Second):
				t.Fatalf("kubectl port-forward printed no local port within 30s; stderr:\n%s", stderr.String())
			}
			want := "hello-from-" + target
			testenv.Eventually(t, 20*time.Second, func() error {
				body, err := httpGet("http://127.0.0.1:" + local + "/")
				if err != nil {
					return fmt.Errorf("%w (port-forward stderr: %s)", err, stderr.String())
				}
				if got := strings.TrimSpace(body); got != want {
					return fmt.Errorf("GET through port-forward = %q, want %q", got, want)
				}
				return nil
			})
		})
	}

	step("Logs", func(t *testing.T, s *testenv.Server) {
		readyPod(t, s, ns, "logger")
		testenv.Eventually(t, 30*time.Second, func() error {
			r := s.Kubectl("logs", "-n", ns, "logger")
			if r.Err != nil {
				return fmt.Errorf("kubectl logs: %s", r)
			}
			if !strings.Contains(r.Stdout, "marker-123") {
				return fmt.Errorf("kubectl logs = %q, want marker-123", r.Stdout)
			}
			return nil
		})
	})

	step("LogsFollowExecStdinAttach", func(t *testing.T, s *testenv.Server) {
		readyPod(t, s, ns, "logger")
		// logs -f streams until stopped.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var out strings.Builder
		follow := s.KubectlClient().Command(ctx, "logs", "-f", "-n", ns, "logger")
		follow.Stdout = &out
		began := time.Now()
		_ = follow.Run()
		if !strings.Contains(out.String(), "marker-123") {
			t.Errorf("kubectl logs -f = %q, want marker-123", out.String())
		}
		if time.Since(began) < 4*time.Second {
			t.Errorf("kubectl logs -f returned after %s, want it to follow until stopped", time.Since(began))
		}
		// exec with stdin.
		if got := strings.TrimSpace(s.MustKubectlStdin("through-stdin\n", "exec", "-i", "-n", ns, "logger", "--", "cat")); got != "through-stdin" {
			t.Errorf("kubectl exec -i cat = %q, want through-stdin", got)
		}
		// attach to a running container's stdin and stdout.
		readyPod(t, s, ns, "echoer")
		if got := s.MustKubectlStdin("ping\n", "attach", "-i", "-n", ns, "echoer"); !strings.Contains(got, "got-ping") {
			t.Errorf("kubectl attach -i = %q, want got-ping", got)
		}
	})

	step("Copy", func(t *testing.T, s *testenv.Server) {
		readyPod(t, s, ns, "logger")
		content := "copied-" + randomSuffix(t)
		local := filepath.Join(t.TempDir(), "payload.txt")
		if err := os.WriteFile(local, []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s.MustKubectl("cp", "-n", ns, "-c", "logger", local, "logger:/tmp/payload.txt")
		r := execIn(t, s, ns, "logger", "logger", "cat", "/tmp/payload.txt")
		if r.Err != nil {
			t.Fatalf("reading the copied file: %s", r)
		}
		if got := strings.TrimSpace(r.Stdout); got != content {
			t.Errorf("copied file = %q, want %q", got, content)
		}
		// And back out again.
		back := filepath.Join(t.TempDir(), "back.txt")
		s.MustKubectl("cp", "-n", ns, "-c", "logger", "logger:/tmp/payload.txt", back)
		if got := strings.TrimSpace(string(readFile(t, back))); got != content {
			t.Errorf("file copied back = %q, want %q", got, content)
		}
	})

	step("Volumes", func(t *testing.T, s *testenv.Server) {
		readyPod(t, s, ns, "volumes")
		for path, want := range map[string]string{
			"/etc/settings/greeting": "hello-configmap",
			"/etc/creds/password":    "s3cret-value",
			"/scratch/shared":        "from-writer",
		} {
			testenv.Eventually(t, 20*time.Second, func() error {
				r := execIn(t, s, ns, "volumes", "reader", "cat", path)
				if r.Err != nil {
					return fmt.Errorf("cat %s: %s", path, r)
				}
				if got := strings.TrimSpace(r.Stdout); got != want {
					return fmt.Errorf("%s = %q, want %q", path, got, want)
				}
				return nil
			})
		}
		// The emptyDir is writable and shared both ways.
		if r := execIn(t, s, ns, "volumes", "reader", "sh", "-c", "echo from-reader > /scratch/back"); r.Err != nil {
			t.Fatalf("writing to the emptyDir: %s", r)
		}
		r := execIn(t, s, ns, "volumes", "writer", "cat", "/scratch/back")
		if r.Err != nil || strings.TrimSpace(r.Stdout) != "from-reader" {
			t.Errorf("writer reading what reader wrote: %s", r)
		}
		// ConfigMap volumes are read-only.
		if r := execIn(t, s, ns, "volumes", "reader", "sh", "-c", "echo x > /etc/settings/new"); r.Err == nil {
			t.Errorf("writing into a ConfigMap volume succeeded, want a read-only file system")
		}
	})

	step("LivenessProbeRestartsContainer", func(t *testing.T, s *testenv.Server) {
		testenv.Eventually(t, podTimeout, func() error {
			p := getPod(t, s, ns, "liveness")
			if len(p.Status.ContainerStatuses) != 1 {
				return fmt.Errorf("no container status yet: %s", p.describe())
			}
			c := p.Status.ContainerStatuses[0]
			if c.RestartCount < 1 {
				return fmt.Errorf("not restarted yet: %s", p.describe())
			}
			if c.LastState.Terminated == nil {
				return fmt.Errorf("restarted but no last termination state: %s", p.describe())
			}
			return nil
		})
		if prev := s.MustKubectl("logs", "--previous", "-n", ns, "liveness"); !strings.Contains(prev, "probed-started") {
			t.Errorf("kubectl logs --previous = %q, want the first container's probed-started", prev)
		}
		events := s.MustKubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=liveness", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}")
		if !strings.Contains(events, "Unhealthy") || !strings.Contains(events, "Liveness probe failed") {
			t.Errorf("no Unhealthy/Liveness probe failed event for the pod; events:\n%s", events)
		}
	})

	step("MissingImage", func(t *testing.T, s *testenv.Server) {
		testenv.Eventually(t, podTimeout, func() error {
			p := getPod(t, s, ns, "nope")
			if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil {
				return fmt.Errorf("container not waiting: %s", p.describe())
			}
			w := p.Status.ContainerStatuses[0].State.Waiting
			if w.Reason != "ErrImagePull" && w.Reason != "ImagePullBackOff" {
				return fmt.Errorf("waiting reason %q, want ErrImagePull or ImagePullBackOff: %s", w.Reason, p.describe())
			}
			if !strings.Contains(w.Message, missingImage) {
				return fmt.Errorf("waiting message %q does not name %s", w.Message, missingImage)
			}
			return nil
		})
		if p := getPod(t, s, ns, "nope"); p.Status.Phase != "Pending" {
			t.Errorf("pod with a missing image: phase %s, want Pending", p.Status.Phase)
		}
	})

	step("RegistryPull", func(t *testing.T, s *testenv.Server) {
		if !strings.Contains(pushOutput, "pushed "+pushedImage+"@sha256:") {
			t.Errorf("strata image push printed no digest for %s:\n%s", pushedImage, pushOutput)
		}
		// Pulled through the node's mirror: the image exists nowhere else.
		p := readyPod(t, s, ns, "pushed")
		if got := p.Status.ContainerStatuses[0].Image; got != pushedImage {
			t.Errorf("running image %s, want %s", got, pushedImage)
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			r := s.Kubectl("logs", "-n", ns, "pushed")
			if r.Err != nil || strings.TrimSpace(r.Stdout) != marker {
				return fmt.Errorf("kubectl logs pushed = %s, want %s (the pushed layer)", r, marker)
			}
			return nil
		})
		events := s.MustKubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=pushed", "-o", "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}")
		if !strings.Contains(events, "Pulled") {
			t.Errorf("no Pulled event for the pushed image; events:\n%s", events)
		}

		// Anyone pulls; only the admin pushes.
		if code, body := registryRequest(t, s, nil, "GET", "/v2/strata-e2e/pushed/manifests/1"); code != http.StatusOK {
			t.Errorf("anonymous manifest GET: %d %s", code, body)
		}
		code, body := registryRequest(t, s, nil, "POST", "/v2/strata-e2e/other/blobs/uploads/")
		if code != http.StatusUnauthorized || !strings.Contains(body, "client certificate") || !strings.Contains(body, "system:masters") {
			t.Errorf("anonymous push: %d %s, want 401 saying a system:masters client certificate is needed", code, body)
		}
		nodeCerts, _ := filepath.Glob(filepath.Join(s.DataDir(), "pki", "node-*.crt"))
		if len(nodeCerts) == 0 {
			t.Fatalf("no node certificate under %s/pki", s.DataDir())
		}
		nodeCert, err := tls.LoadX509KeyPair(nodeCerts[0], strings.TrimSuffix(nodeCerts[0], ".crt")+".key")
		if err != nil {
			t.Fatal(err)
		}
		code, body = registryRequest(t, s, &nodeCert, "POST", "/v2/strata-e2e/other/blobs/uploads/")
		if code != http.StatusForbidden || !strings.Contains(body, "DENIED") || !strings.Contains(body, "system:masters") {
			t.Errorf("push with a node's certificate: %d %s, want 403 DENIED naming system:masters", code, body)
		}

		// Pushing from a directory with no server says what is missing.
		r := testenv.Run(t, s.Bin(), "image", "push", "--data-dir", t.TempDir(), pushed)
		if r.Err == nil || !strings.Contains(r.Stderr, "admin.kubeconfig") {
			t.Errorf("push without a server's data dir: %s, want an error naming the admin kubeconfig", r)
		}
	})

	if deployed {
		step("Rollout", func(t *testing.T, s *testenv.Server) {
			rollout := func() {
				t.Helper()
				r := s.Kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout="+rolloutTimeout)
				if r.Err != nil {
					pods := s.Kubectl("get", "pods", "-n", ns, "-o", "wide").Stdout
					events := s.Kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp").Stdout
					t.Fatalf("kubectl rollout status: %s\npods:\n%s\nevents:\n%s", r, pods, lastBytes(events, 6<<10))
				}
			}
			envOf := func(p nodePod) string {
				for _, e := range p.Spec.Containers[0].Env {
					if e.Name == "ROLLOUT" {
						return e.Value
					}
				}
				return ""
			}
			statusImage := func(p nodePod) string {
				if len(p.Status.ContainerStatuses) == 0 {
					return ""
				}
				return p.Status.ContainerStatuses[0].Image
			}

			// A new pod template by env.
			s.MustKubectl("set", "env", "deployment/web", "-n", ns, "ROLLOUT=v2")
			rollout()
			pods := waitWebPods(t, s, ns, func(p nodePod) error {
				if got := envOf(p); got != "v2" {
					return fmt.Errorf("ROLLOUT=%q, want v2", got)
				}
				return nil
			})
			if r := execIn(t, s, ns, pods[0].Metadata.Name, "web", "sh", "-c", "echo $ROLLOUT"); r.Err != nil || strings.TrimSpace(r.Stdout) != "v2" {
				t.Errorf("ROLLOUT inside the new container: %s", r)
			}

			// A new pod template by image.
			s.MustKubectl("set", "image", "deployment/web", "-n", ns, "web="+busyboxImageV2)
			rollout()
			waitWebPods(t, s, ns, func(p nodePod) error {
				if got := p.Spec.Containers[0].Image; got != busyboxImageV2 {
					return fmt.Errorf("image %s, want %s", got, busyboxImageV2)
				}
				if got := statusImage(p); got != busyboxImageV2 {
					return fmt.Errorf("running image %s, want %s", got, busyboxImageV2)
				}
				return nil
			})

			// Undo goes back to the previous template: the old image, the env kept.
			s.MustKubectl("rollout", "undo", "deployment/web", "-n", ns)
			rollout()
			waitWebPods(t, s, ns, func(p nodePod) error {
				if got := p.Spec.Containers[0].Image; got != busyboxImage {
					return fmt.Errorf("image %s after undo, want %s", got, busyboxImage)
				}
				if got := envOf(p); got != "v2" {
					return fmt.Errorf("ROLLOUT=%q after undo, want v2", got)
				}
				return nil
			})
			history := s.MustKubectl("rollout", "history", "deployment/web", "-n", ns)
			if !strings.Contains(history, "4") {
				t.Errorf("rollout history lacks revision 4:\n%s", history)
			}
		})
	}

	step("Metrics", func(t *testing.T, s *testenv.Server) {
		// The API server's and the node's (kubelet) /metrics; Strata's own
		// (cluster DNS) are in the process's registry, so on both.
		api := s.MustKubectl("get", "--raw", "/metrics")
		for _, want := range []string{"apiserver_request_total", "strata_dns_requests_total"} {
			if !strings.Contains(api, want) {
				t.Errorf("API server /metrics lacks %s", want)
			}
		}
		node := strings.TrimPrefix(s.MustKubectl("get", "nodes", "-o", "name"), "node/")
		kubelet := s.MustKubectl("get", "--raw", "/api/v1/nodes/"+strings.TrimSpace(node)+"/proxy/metrics")
		for _, want := range []string{"kubelet_running_pods", `strata_dns_requests_total{rcode="NOERROR",zone="cluster"}`} {
			if !strings.Contains(kubelet, want) {
				t.Errorf("node /metrics lacks %s", want)
			}
		}
	})

	step("PersistentVolumes", func(t *testing.T, s *testenv.Server) {
		persistentVolumesOnNode(t, s, ns)
	})

	step("OpenStackVolumes", func(t *testing.T, s *testenv.Server) {
		openStackVolumes(t, s)
	})

	step("NetworkPolicy", func(t *testing.T, s *testenv.Server) {
		networkPolicyOnNode(t, s, ns)
	})

	step("VirtualMachineOnTheNode", func(t *testing.T, s *testenv.Server) {
		readyPod(t, s, ns, "logger")
		vmOnNode(t, s, ns, "logger")
	})

	step("VirtualMachineReadsMetadata", func(t *testing.T, s *testenv.Server) {
		vmReadsMetadata(t, s, ns)
	})

	step("VirtualMachineConsoleAndPause", func(t *testing.T, s *testenv.Server) {
		vmConsoleAndPause(t, s, ns)
	})

	step("VirtualMachinePoolRolls", func(t *testing.T, s *testenv.Server) {
		// Two Images (the same disk) for the pool to roll between.
		uploadTestVMImage(t, s, ns, "pool-a")
		uploadTestVMImage(t, s, ns, "pool-b")
		VMPoolRollsOnNode(t, s, ns, "pool-a", "pool-b")
	})

	step("VMVolumes", func(t *testing.T, s *testenv.Server) {
		vmVolumes(t, s, ns)
	})

	// Last: it restarts the server.
	step("OpenStackCompute", func(t *testing.T, s *testenv.Server) {
		openStackCompute(t, s)
	})

	step("RestartKeepsContainers", func(t *testing.T, s *testenv.Server) {
		type key struct{ pod, container string }
		type seen struct {
			id       string
			restarts int
			podIP    string
		}
		// The web pods (if the Deployment came up), the logger and the
		// volumes pod; not the liveness pod, which restarts by design.
		names := []string{"logger", "volumes"}
		for _, p := range liveWebPods(t, s, ns) {
			names = append(names, p.Metadata.Name)
		}
		before := map[key]seen{}
		for _, name := range names {
			p := readyPod(t, s, ns, name)
			for _, c := range p.Status.ContainerStatuses {
				if c.State.Running == nil || c.ContainerID == "" {
					t.Fatalf("container %s of %s is not running: %s", c.Name, name, p.describe())
				}
				before[key{name, c.Name}] = seen{c.ContainerID, c.RestartCount, p.Status.PodIP}
			}
		}
		// A file in the container's own writable layer tells the same
		// container from a new one.
		if r := execIn(t, s, ns, "logger", "logger", "sh", "-c", "echo before-restart > /tmp/restart-marker"); r.Err != nil {
			t.Fatalf("writing the marker: %s", r)
		}

		s.Restart() // SIGTERM, start on the same data dir, /readyz, node Ready

		testenv.Eventually(t, 60*time.Second, func() error {
			r := execIn(t, s, ns, "logger", "logger", "cat", "/tmp/restart-marker")
			if r.Err != nil {
				return fmt.Errorf("exec after restart: %s", r)
			}
			if got := strings.TrimSpace(r.Stdout); got != "before-restart" {
				return fmt.Errorf("marker after restart = %q, want before-restart", got)
			}
			return nil
		})
		for _, name := range names {
			p := readyPod(t, s, ns, name)
			for _, c := range p.Status.ContainerStatuses {
				was, ok := before[key{name, c.Name}]
				if !ok {
					t.Errorf("pod %s has a new container %s after restart", name, c.Name)
					continue
				}
				if c.ContainerID != was.id {
					t.Errorf("pod %s container %s: ID %s after restart, was %s", name, c.Name, c.ContainerID, was.id)
				}
				if c.RestartCount != was.restarts {
					t.Errorf("pod %s container %s: restartCount %d after restart, was %d", name, c.Name, c.RestartCount, was.restarts)
				}
				if p.Status.PodIP != was.podIP {
					t.Errorf("pod %s: IP %s after restart, was %s", name, p.Status.PodIP, was.podIP)
				}
			}
		}
		// The pods still serve, and the host still reaches them.
		for _, name := range names {
			if !strings.HasPrefix(name, "web-") {
				continue
			}
			p := getPod(t, s, ns, name)
			testenv.Eventually(t, 30*time.Second, func() error {
				body, err := httpGet("http://" + net.JoinHostPort(p.Status.PodIP, "80") + "/")
				if err != nil {
					return err
				}
				if got, want := strings.TrimSpace(body), "hello-from-"+name; got != want {
					return fmt.Errorf("GET %s after restart = %q, want %q", name, got, want)
				}
				return nil
			})
		}
	})
	t.Logf("TestNode took %s", time.Since(began).Round(time.Millisecond))
}
