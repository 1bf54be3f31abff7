package diskimage

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
)

func TestDetect(t *testing.T) {
	qcow2 := FakeQcow2(512, 10<<30)
	qcow1 := bytes.Clone(qcow2)
	binary.BigEndian.PutUint32(qcow1[4:], 1)
	vmdk := make([]byte, 512)
	copy(vmdk, "KDMV")
	binary.LittleEndian.PutUint64(vmdk[12:], 2048)
	iso := make([]byte, 0x9000)
	copy(iso[0x8001:], "CD001")
	raw := bytes.Repeat([]byte{0xeb, 0x63, 0x90}, 200) // an MBR boot jump and noise

	for _, c := range []struct {
		name, format string
		data         []byte
		virtual      int64
		bad          bool
	}{
		{"qcow2", "qcow2", qcow2, 10 << 30, false},
		{"qcow1", "", qcow1, 0, true},
		{"vmdk", "vmdk", vmdk, 2048 * 512, false},
		{"iso", "iso", iso, int64(len(iso)), false},
		{"raw", "raw", raw, int64(len(raw)), false},
		{"empty", "", nil, 0, true},
		{"gzip", "", append([]byte{0x1f, 0x8b, 8, 0}, raw...), 0, true},
		{"html", "", []byte("\n<!DOCTYPE html><html><body>Not Found</body></html>"), 0, true},
		{"text", "", []byte("404 page not found\n"), 0, true},
		{"tar", "", tarOf(t, "disk.img", raw), 0, true},
	} {
		info, err := Detect(bytes.NewReader(c.data), int64(len(c.data)))
		if c.bad {
			if err == nil || c.name != "qcow1" && !errors.Is(err, ErrNotDiskImage) {
				t.Errorf("%s: detected %+v, want an error", c.name, info)
			}
			continue
		}
		if err != nil || info.Format != c.format || info.VirtualSize != c.virtual || info.Size != int64(len(c.data)) {
			t.Errorf("%s: %+v, %v; want format %s, virtual size %d", c.name, info, err, c.format, c.virtual)
		}
	}
	if !Bootable("qcow2") || !Bootable("raw") || Bootable("iso") {
		t.Error("Bootable: want raw and qcow2 only")
	}
}

func TestArtifact(t *testing.T) {
	path := t.TempDir() + "/disk.qcow2"
	data := bytes.Repeat([]byte("strata"), 100000)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Artifact(path)
	if err != nil {
		t.Fatal(err)
	}
	rc, size, err := ReadDisk(img)
	if err != nil || size != int64(len(data)) {
		t.Fatalf("ReadDisk: size %d, %v; want %d bytes", size, err, len(data))
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, data) {
		t.Error("layer content differs from the file")
	}
	// Hashing twice gives one digest: the stream is reproducible.
	d1, _ := img.Digest()
	img2, _ := Artifact(path)
	if d2, _ := img2.Digest(); d1 != d2 {
		t.Errorf("digests %s and %s of one file", d1, d2)
	}
}

func tarOf(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	return b.Bytes()
}
