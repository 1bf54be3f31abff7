package diskimage

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"testing"
)

func TestDetect(t *testing.T) {
	qcow2 := make([]byte, 512)
	copy(qcow2, []byte{'Q', 'F', 'I', 0xfb})
	binary.BigEndian.PutUint32(qcow2[4:], 3)
	binary.BigEndian.PutUint64(qcow2[24:], 10<<30)
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
		{"empty", "raw", nil, 0, false},
	} {
		info, err := Detect(bytes.NewReader(c.data), int64(len(c.data)))
		if c.bad {
			if err == nil {
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
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v, %v; want one", layers, err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil || h.Name != FileName || h.Size != int64(len(data)) {
		t.Fatalf("layer entry %+v, %v; want %s of %d bytes", h, err, FileName, len(data))
	}
	got, _ := io.ReadAll(tr)
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
