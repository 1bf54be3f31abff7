package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/storage/diskimage"
	"github.com/strata-cloud/strata/internal/testenv"
)

// The Image tests run on the shared server: imports come from an HTTP
// server of the test on loopback, never from the internet.

func sha256Of(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// imageFileServer serves files on loopback; "/slow/" paths trickle out in
// chunks so that an import's progress can be seen.
func imageFileServer(t *testing.T, files map[string][]byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[strings.TrimPrefix(r.URL.Path, "/slow")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if !strings.HasPrefix(r.URL.Path, "/slow/") {
			w.Write(data)
			return
		}
		const chunks = 10
		for i := range chunks {
			if _, err := w.Write(data[i*len(data)/chunks : (i+1)*len(data)/chunks]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(700 * time.Millisecond)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func imageManifest(name, spec string) string {
	return fmt.Sprintf("apiVersion: storage.strata.io/v1alpha1\nkind: Image\nmetadata: {name: %s}\nspec: %s\n", name, spec)
}

func TestVMImageImport(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	disk := diskimage.FakeQcow2(4<<20, 2<<30)
	sum := sha256Of(disk)
	base := imageFileServer(t, map[string][]byte{
		"/disk.qcow2": disk,
		"/index.html": []byte("<!doctype html>\n<html><body>Downloads</body></html>\n"),
	})

	// kubectl alone: the server imports spec.source.url, showing progress.
	s.MustKubectlStdin(imageManifest("slow", fmt.Sprintf("{source: {url: %q, checksum: %q}}", base+"/slow/disk.qcow2", "sha256:"+sum)), "create", "-n", ns, "-f", "-")
	percent := regexp.MustCompile(`^Importing [0-9]{1,3}% [0-9]+$`)
	sawProgress := ""
	testenv.Eventually(t, 60*time.Second, func() error {
		got := vmImageField(s, ns, "slow", "{.status.phase} {.status.progress} {.status.importedBytes}")
		if percent.MatchString(got) && !strings.HasPrefix(got, "Importing 0% ") {
			sawProgress = got
		}
		if !strings.HasPrefix(got, "Active") {
			return fmt.Errorf("image status %q, want Active", got)
		}
		return nil
	})
	if sawProgress == "" {
		t.Error("never saw the import's progress in status (phase Importing, progress N%, importedBytes)")
	}
	want := fmt.Sprintf("Active qcow2 %d %d %s 100%%", len(disk), 2<<30, sum)
	if got := vmImageField(s, ns, "slow", "{.status.phase} {.status.format} {.status.sizeBytes} {.status.virtualSizeBytes} {.status.checksum} {.status.progress}"); got != want {
		t.Errorf("imported image status %q, want %q", got, want)
	}
	if ref := vmImageField(s, ns, "slow", "{.status.reference}"); !strings.HasPrefix(ref, "images.strata.invalid/vm-images/"+ns+"/slow@sha256:") {
		t.Errorf("imported image reference %q", ref)
	}
	if table := s.MustKubectl("get", "vmimages", "-n", ns, "-o", "wide"); !strings.Contains(table, "PROGRESS") || column(t, table, "slow", "PROGRESS") != "100%" {
		t.Errorf("kubectl get vmimages -o wide lacks PROGRESS 100%%:\n%s", table)
	}

	// The CLI creates the Image and follows the import.
	r := testenv.Run(t, s.Bin(), "image", "upload", "cli", "--url", base+"/disk.qcow2", "--checksum", "sha256:"+sum, "-n", ns, "--data-dir", s.DataDir())
	if r.Err != nil || !strings.Contains(r.Stdout, "image "+ns+"/cli is Active") || !strings.Contains(r.Stdout, "sha256 "+sum) {
		t.Fatalf("strata image upload --url: %s", r)
	}

	// Bad sources end in Error naming the cause, and the CLI says it.
	zeros := "sha256:" + strings.Repeat("0", 64)
	for _, c := range []struct{ name, url, checksum, want string }{
		{"missing", base + "/nope.qcow2", "", "HTTP 404 Not Found"},
		{"mismatch", base + "/disk.qcow2", zeros, "checksum mismatch: expected " + zeros + ", got sha256:" + sum},
		{"webpage", base + "/index.html", "", "not a disk image: the content is an HTML page"},
		{"refused", "http://127.0.0.1:1/disk.qcow2", "", "connection refused"},
	} {
		args := []string{"image", "upload", c.name, "--url", c.url, "-n", ns, "--data-dir", s.DataDir()}
		if c.checksum != "" {
			args = append(args, "--checksum", c.checksum)
		}
		r := testenv.Run(t, s.Bin(), args...)
		if r.Err == nil || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%s: %s\nwant a failure containing %q", c.name, r, c.want)
		}
		if got := vmImageField(s, ns, c.name, "{.status.phase}: {.status.message}"); !strings.HasPrefix(got, "Error: import failed: ") || !strings.Contains(got, c.want) {
			t.Errorf("%s: image status %q, want Error containing %q", c.name, got, c.want)
		}
	}

	// The schema refuses what cannot be imported.
	for _, c := range []struct{ spec, want string }{
		{`{source: {url: "ftp://example.invalid/disk.img"}}`, "spec.source.url"},
		{`{source: {url: "http://example.invalid/disk.img", checksum: "md5:abc"}}`, "spec.source.checksum"},
	} {
		if r := s.KubectlStdin(imageManifest("bad", c.spec), "create", "-n", ns, "-f", "-"); r.Err == nil || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%s: %s, want a rejection naming %s", c.spec, r, c.want)
		}
	}
	// The CLI checks --checksum's form before anything.
	if r := testenv.Run(t, s.Bin(), "image", "upload", "x", "--url", base+"/disk.qcow2", "--checksum", "deadbeef", "-n", ns, "--data-dir", s.DataDir()); r.Err == nil || !strings.Contains(r.Stderr, "want sha256:<64 hex digits>") {
		t.Errorf("a malformed --checksum: %s", r)
	}
}

func TestVMImageUploadChecksum(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	data := diskimage.FakeQcow2(1<<20, 2<<30)
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := "sha256:" + sha256Of(data)
	upload := func(name, file string, extra ...string) testenv.Result {
		return testenv.Run(t, s.Bin(), append([]string{"image", "upload", name, file, "-n", ns, "--data-dir", s.DataDir()}, extra...)...)
	}

	// A file that is not what --checksum says is refused before anything
	// is stored: no Image is left behind.
	other := "sha256:" + strings.Repeat("1", 64)
	r := upload("wrong", disk, "--checksum", other)
	if r.Err == nil || !strings.Contains(r.Stderr, "checksum mismatch: expected "+other+", got "+sum) || !strings.Contains(r.Stderr, "nothing was uploaded") {
		t.Errorf("upload with a wrong --checksum: %s", r)
	}
	requireNotFound(t, s, "vmimage", "wrong", "-n", ns)

	// A file that is no disk image is refused too.
	page := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(page, []byte("<html><body>404</body></html>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := upload("page", page); r.Err == nil || !strings.Contains(r.Stderr, "not a disk image") {
		t.Errorf("upload of a web page: %s", r)
	}
	requireNotFound(t, s, "vmimage", "page", "-n", ns)

	// The right one is stored and the Image records what it expects.
	if r := upload("right", disk, "--checksum", sum); r.Err != nil || !strings.Contains(r.Stdout, "is Active") {
		t.Fatalf("upload with the right --checksum: %s", r)
	}
	if got := vmImageField(s, ns, "right", "{.spec.source.checksum} {.status.phase}"); got != sum+" Active" {
		t.Errorf("image %q, want %s Active", got, sum)
	}
	// An Image expecting other bytes than its artifact holds is in Error.
	s.MustKubectl("patch", "vmimage", "right", "-n", ns, "--type=merge", "-p", `{"spec":{"source":{"checksum":"`+other+`"}}}`)
	testenv.Eventually(t, 30*time.Second, func() error {
		got := vmImageField(s, ns, "right", "{.status.phase}: {.status.message}")
		if !strings.HasPrefix(got, "Error: ") || !strings.Contains(got, "checksum mismatch: expected "+other+", got "+sum) {
			return fmt.Errorf("image status %q, want Error with a checksum mismatch", got)
		}
		return nil
	})
	// Uploading into it again is refused while it expects other bytes.
	if r := upload("right", disk); r.Err == nil || !strings.Contains(r.Stderr, "spec.source.checksum: checksum mismatch") {
		t.Errorf("upload into an Image expecting other bytes: %s", r)
	}
}

func TestVMImageDeleteInUse(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, diskimage.FakeQcow2(1<<20, 2<<30), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"debian", "spare"} {
		if r := testenv.Run(t, s.Bin(), "image", "upload", name, disk, "-n", ns, "--data-dir", s.DataDir()); r.Err != nil {
			t.Fatalf("strata image upload: %s", r)
		}
	}
	for _, vm := range []string{"web2", "web1"} {
		s.MustKubectlStdin(vmManifest(vm, `{resources: {vcpus: 1, memoryMiB: 64}, image: debian, runStrategy: Halted}`), "create", "-n", ns, "-f", "-")
	}

	// Refused with 409 Conflict in Kubernetes' error format, naming the VMs.
	want := fmt.Sprintf(`image "debian" is in use by virtual machines web1, web2 in namespace %s; delete them first`, ns)
	r := s.Kubectl("delete", "vmimage", "debian", "-n", ns)
	if r.Err == nil || !strings.Contains(r.Stderr, "Error from server (Conflict)") || !strings.Contains(r.Stderr, want) {
		t.Fatalf("deleting an image in use: %s\nwant a Conflict saying %q", r, want)
	}
	raw := s.Kubectl("delete", "--raw", "/apis/storage.strata.io/v1alpha1/namespaces/"+ns+"/images/debian")
	if raw.Err == nil || !strings.Contains(raw.Stderr+raw.Stdout, "Conflict") {
		t.Errorf("DELETE of an image in use: %s, want 409 Conflict", raw)
	}
	if got := vmImageField(s, ns, "debian", "{.status.phase}"); got != "Active" {
		t.Errorf("image after a refused delete: phase %q, want Active", got)
	}
	// --all deletes what is unused and refuses the rest.
	r = s.Kubectl("delete", "vmimages", "--all", "-n", ns)
	if r.Err == nil || !strings.Contains(r.Stderr, want) {
		t.Errorf("kubectl delete vmimages --all: %s, want the in-use one refused", r)
	}
	requireNotFound(t, s, "vmimage", "spare", "-n", ns)

	// Once its VMs are gone, it goes.
	s.MustKubectl("delete", "vm", "web1", "web2", "-n", ns, "--timeout=60s")
	s.MustKubectl("delete", "vmimage", "debian", "-n", ns)

	// A namespace being deleted takes its images with its VMs.
	ns2 := newNamespace(t, s)
	if r := testenv.Run(t, s.Bin(), "image", "upload", "debian", disk, "-n", ns2, "--data-dir", s.DataDir()); r.Err != nil {
		t.Fatalf("strata image upload: %s", r)
	}
	s.MustKubectlStdin(vmManifest("web", `{resources: {vcpus: 1, memoryMiB: 64}, image: debian, runStrategy: Halted}`), "create", "-n", ns2, "-f", "-")
	s.MustKubectl("delete", "namespace", ns2, "--wait=false")
	testenv.Eventually(t, 90*time.Second, func() error {
		if r := s.Kubectl("get", "namespace", ns2); !isNotFound(r) {
			return fmt.Errorf("namespace %s still there: %s", ns2, r)
		}
		return nil
	})
}
