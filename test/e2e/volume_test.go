package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// volumeTimeout bounds provisioning, binding and reclaiming.
const volumeTimeout = 2 * time.Minute

// dbStatefulSet keeps a file on a claim of the default StorageClass.
const dbStatefulSet = `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: ` + busyboxImage + `
        command: ["sh", "-c", "sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 64Mi}}
`

// rawBlock uses a Block-mode claim as a raw device.
const rawBlock = `
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: raw}
spec:
  storageClassName: strata
  volumeMode: Block
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: raw}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: raw
    image: ` + busyboxImage + `
    command: ["sh", "-c", "sleep 3600"]
    volumeDevices: [{name: raw, devicePath: /dev/xvda}]
  volumes: [{name: raw, persistentVolumeClaim: {claimName: raw}}]
`

// hugeClaim cannot fit on any node.
const hugeClaim = `
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: huge}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Ti}}
---
apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: ` + busyboxImage + `, command: ["sleep", "3600"], volumeMounts: [{name: d, mountPath: /d}]}
  volumes: [{name: d, persistentVolumeClaim: {claimName: huge}}]
`

// plainVolume and its snapshot exercise the API directly.
const plainVolume = `
apiVersion: storage.strata.io/v1alpha1
kind: Volume
metadata: {name: plain}
spec: {size: 8Mi}
---
apiVersion: storage.strata.io/v1alpha1
kind: VolumeSnapshot
metadata: {name: plain-snap}
spec: {volume: plain}
`

func volPath(t *testing.T, s *testenv.Server, ns, path string, what ...string) string {
	t.Helper()
	args := append([]string{"get"}, what...)
	if ns != "" {
		args = append(args, "-n", ns)
	}
	r := s.Kubectl(append(args, "-o", "jsonpath="+path)...)
	if r.Err != nil {
		return ""
	}
	return strings.TrimSpace(r.Stdout)
}

func waitJSONPath(t *testing.T, s *testenv.Server, ns, path, want string, what ...string) {
	t.Helper()
	testenv.Eventually(t, volumeTimeout, func() error {
		if got := volPath(t, s, ns, path, what...); got != want {
			return fmt.Errorf("%v %s = %q, want %q", what, path, got, want)
		}
		return nil
	})
}

func claimEvents(t *testing.T, s *testenv.Server, ns, name string) string {
	return s.MustKubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name="+name,
		"-o", `jsonpath={range .items[*]}{.reason}: {.message}{"\n"}{end}`)
}

// persistentVolumesOnNode: claims of the default class bind, a
// StatefulSet's data survives its pod, a Block claim is a device and
// grows, a claim that fits nowhere says why, and the Volume API refuses
// what Cinder refuses.
func persistentVolumesOnNode(t *testing.T, s *testenv.Server, ns string) {
	if got := volPath(t, s, "", `{.provisioner} {.volumeBindingMode} {.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}`, "storageclass", "strata"); got != "storage.strata.io/volume WaitForFirstConsumer true" {
		t.Fatalf("storageclass strata: %q, want the default, WaitForFirstConsumer", got)
	}
	s.MustKubectlStdin(dbStatefulSet, "apply", "-n", ns, "-f", "-")
	s.MustKubectlStdin(rawBlock, "apply", "-n", ns, "-f", "-")
	s.MustKubectlStdin(hugeClaim, "apply", "-n", ns, "-f", "-")
	defer func() {
		if t.Failed() {
			t.Logf("state:\n%s\n%s", s.Kubectl("get", "pvc,pv,volumes,volumesnapshots,pods", "-n", ns, "-o", "wide").Stdout,
				s.Kubectl("get", "events", "-n", ns).Stdout)
		}
	}()

	t.Run("StatefulSetDataSurvivesPodDeletion", func(t *testing.T) {
		waitJSONPath(t, s, ns, "{.status.phase}", "Bound", "pvc", "data-db-0")
		pod := readyPod(t, s, ns, "db-0")
		pvName := volPath(t, s, ns, "{.spec.volumeName}", "pvc", "data-db-0")
		if !strings.HasPrefix(pvName, "pvc-") {
			t.Fatalf("claim bound to %q", pvName)
		}
		if got := volPath(t, s, "", "{.spec.storageClassName} {.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].key}", "pv", pvName); got != "strata kubernetes.io/hostname" {
			t.Errorf("PV %s: %q", pvName, got)
		}
		waitJSONPath(t, s, ns, "{.status.phase} {.spec.node} {.spec.volumeMode}", "In-use "+pod.Spec.NodeName+" Filesystem", "volume", pvName)
		// The filesystem has the claim's size, not the node's disk.
		df := execIn(t, s, ns, "db-0", "db", "df", "-k", "/data")
		if f := strings.Fields(df.Stdout); df.Err != nil || len(f) < 9 {
			t.Errorf("df: %s", df)
		} else if kb, _ := strconv.Atoi(f[8]); kb < 40<<10 || kb > 64<<10 {
			t.Errorf("df /data: %d KiB in total, want about 64Mi: %s", kb, df.Stdout)
		}
		marker := "kept-" + randomSuffix(t)
		if r := execIn(t, s, ns, "db-0", "db", "sh", "-c", "echo "+marker+" > /data/marker && sync"); r.Err != nil {
			t.Fatalf("writing the marker: %s", r)
		}
		oldUID := volPath(t, s, ns, "{.metadata.uid}", "pod", "db-0")
		s.MustKubectl("delete", "pod", "db-0", "-n", ns, "--wait=true", "--timeout=60s")
		testenv.Eventually(t, podTimeout, func() error {
			if uid := volPath(t, s, ns, "{.metadata.uid}", "pod", "db-0"); uid == "" || uid == oldUID {
				return fmt.Errorf("no new db-0 yet")
			}
			return nil
		})
		readyPod(t, s, ns, "db-0")
		r := execIn(t, s, ns, "db-0", "db", "cat", "/data/marker")
		if r.Err != nil || strings.TrimSpace(r.Stdout) != marker {
			t.Fatalf("the new pod reads %s, want %q", r, marker)
		}
		// Bad input: the Volume behind a bound claim cannot go.
		del := s.Kubectl("delete", "volume", pvName, "-n", ns, "--wait=false")
		if del.Err == nil || !strings.Contains(del.Stderr, "(Conflict)") || !strings.Contains(del.Stderr, "attached to pod db-0") {
			t.Errorf("deleting the volume of a bound claim: %s", del)
		}
	})

	t.Run("BlockClaimIsADeviceAndGrows", func(t *testing.T) {
		waitJSONPath(t, s, ns, "{.status.phase}", "Bound", "pvc", "raw")
		readyPod(t, s, ns, "raw")
		r := execIn(t, s, ns, "raw", "raw", "sh", "-c", "echo block-data | dd of=/dev/xvda bs=512 count=1 conv=sync 2>/dev/null && dd if=/dev/xvda bs=512 count=1 2>/dev/null | head -c 10")
		if r.Err != nil || r.Stdout != "block-data" {
			t.Fatalf("write/read the raw device: %s", r)
		}
		s.MustKubectl("patch", "pvc", "raw", "-n", ns, "--type=merge", "-p", `{"spec":{"resources":{"requests":{"storage":"32Mi"}}}}`)
		waitJSONPath(t, s, ns, "{.status.capacity.storage}", "32Mi", "pvc", "raw")
		pv := volPath(t, s, ns, "{.spec.volumeName}", "pvc", "raw")
		if got := volPath(t, s, "", "{.spec.capacity.storage}", "pv", pv); got != "32Mi" {
			t.Errorf("PV capacity %q after the claim grew", got)
		}
	})

	t.Run("UnplaceableClaimSaysWhy", func(t *testing.T) {
		testenv.Eventually(t, volumeTimeout, func() error {
			if ev := claimEvents(t, s, ns, "huge"); !strings.Contains(ev, "ProvisioningFailed") || !strings.Contains(ev, "not enough space on node") {
				return fmt.Errorf("claim events:\n%s", ev)
			}
			return nil
		})
		if p := getPod(t, s, ns, "huge"); p.Status.Phase != "Pending" {
			t.Errorf("pod of the claim that fits nowhere: %s", p.describe())
		}
		s.MustKubectl("delete", "pod,pvc", "huge", "-n", ns, "--wait=false")
	})

	t.Run("VolumeAPIRefusals", func(t *testing.T) {
		s.MustKubectlStdin(plainVolume, "apply", "-n", ns, "-f", "-")
		waitJSONPath(t, s, ns, "{.status.phase}", "Available", "volumesnapshot", "plain-snap")
		del := s.Kubectl("delete", "volume", "plain", "-n", ns, "--wait=false")
		if del.Err == nil || !strings.Contains(del.Stderr, "has snapshots plain-snap") {
			t.Errorf("deleting a volume with snapshots: %s", del)
		}
		small := s.KubectlStdin("apiVersion: storage.strata.io/v1alpha1\nkind: Volume\nmetadata: {name: small}\nspec: {size: 1Mi, source: {snapshot: plain-snap}}\n", "apply", "-n", ns, "-f", "-")
		if small.Err == nil || !strings.Contains(small.Stderr, "spec.size") || !strings.Contains(small.Stderr, "Invalid") {
			t.Errorf("a volume smaller than its snapshot: %s", small)
		}
		s.MustKubectlStdin("apiVersion: storage.strata.io/v1alpha1\nkind: Volume\nmetadata: {name: restored}\nspec: {size: 16Mi, source: {snapshot: plain-snap}}\n", "apply", "-n", ns, "-f", "-")
		waitJSONPath(t, s, ns, "{.status.phase} {.status.size}", "Available 16Mi", "volume", "restored")
		s.MustKubectl("delete", "volumesnapshot", "plain-snap", "-n", ns, "--timeout=60s")
		s.MustKubectl("delete", "volume", "plain", "restored", "-n", ns, "--timeout=60s")
	})

	t.Run("VolumeFromImage", func(t *testing.T) {
		// A 4 MiB raw disk with a marker at its start.
		disk := filepath.Join(t.TempDir(), "disk.raw")
		data := make([]byte, 4<<20)
		copy(data, "strata-volume-from-image")
		if err := os.WriteFile(disk, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if r := testenv.Run(t, s.Bin(), "image", "upload", "tiny", disk, "-n", ns, "--data-dir", s.DataDir()); r.Err != nil {
			t.Fatalf("strata image upload: %s", r)
		}
		waitJSONPath(t, s, ns, "{.status.phase}", "Active", "vmimage", "tiny")
		small := s.KubectlStdin("apiVersion: storage.strata.io/v1alpha1\nkind: Volume\nmetadata: {name: too-small}\nspec: {size: 1Mi, source: {image: tiny}}\n", "apply", "-n", ns, "-f", "-")
		if small.Err == nil || !strings.Contains(small.Stderr, `must be at least the size of image "tiny", 4Mi`) {
			t.Errorf("a volume smaller than its image: %s", small)
		}
		s.MustKubectlStdin("apiVersion: storage.strata.io/v1alpha1\nkind: Volume\nmetadata: {name: from-image}\nspec: {size: 8Mi, source: {image: tiny}}\n", "apply", "-n", ns, "-f", "-")
		waitJSONPath(t, s, ns, "{.status.phase} {.status.size}", "Available 8Mi", "volume", "from-image")
		// The node's file starts with the image's bytes (the server's node
		// shares this machine's file system).
		path := volPath(t, s, ns, "{.status.path}", "volume", "from-image")
		if got, err := os.ReadFile(path); err != nil || len(got) != 8<<20 || !strings.HasPrefix(string(got), "strata-volume-from-image") {
			t.Errorf("volume file %s: %d bytes, %v", path, len(got), err)
		}
		s.MustKubectl("delete", "volume", "from-image", "-n", ns, "--timeout=60s")
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("the volume's file is still there after delete: %v", err)
		}
	})

	t.Run("DeleteReclaims", func(t *testing.T) {
		s.MustKubectl("delete", "statefulset", "db", "-n", ns, "--wait=false")
		s.MustKubectl("delete", "pod", "db-0", "raw", "-n", ns, "--grace-period=1", "--ignore-not-found", "--timeout=60s")
		s.MustKubectl("delete", "pvc", "--all", "-n", ns, "--timeout=60s")
		testenv.Eventually(t, volumeTimeout, func() error {
			if v := volPath(t, s, ns, "{.items[*].metadata.name}", "volumes"); v != "" {
				return fmt.Errorf("volumes left: %s", v)
			}
			pvs := volPath(t, s, "", `{range .items[*]}{.spec.claimRef.namespace}/{.metadata.name} {end}`, "pv")
			if strings.Contains(pvs, ns+"/") {
				return fmt.Errorf("persistent volumes left: %s", pvs)
			}
			return nil
		})
	})
}
