package diskimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FileName is the disk's name inside the artifact, and so inside the image
// volume a launcher pod mounts it from.
const FileName = "disk.img"

// Artifact packs the disk image at path as a one-layer OCI image holding
// FileName. The layer is streamed from the file whenever it is read
// (hashed once, then uploaded), never held in memory.
func Artifact(path string) (v1.Image, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	open := func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		pr, pw := io.Pipe()
		go func() {
			defer f.Close()
			pw.CloseWithError(writeTar(pw, f, st.Size()))
		}()
		return pr, nil
	}
	// Disk images compress well, but time matters more on small hosts.
	layer, err := tarball.LayerFromOpener(open, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	// Nodes pull it for their own platform, like any image.
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	return mutate.ConfigFile(img, cfg)
}

// writeTar writes the layer's tar stream: FileName holding the size bytes
// of r. Fewer bytes are an error, not a short disk.
func writeTar(w io.Writer, r io.Reader, size int64) error {
	tw := tar.NewWriter(w)
	err := tw.WriteHeader(&tar.Header{
		Name: FileName, Mode: 0o444, Size: size, Typeflag: tar.TypeReg,
		ModTime: time.Unix(0, 0), Format: tar.FormatPAX,
	})
	if err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(r, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("the image ended after %d of %d bytes", n, size)
	}
	return tw.Close()
}

// WriteLayer writes the one layer of an artifact holding the size bytes of
// the disk image r to w, compressed as Artifact's, streaming. It returns
// the layer's diff ID (the digest of its tar).
func WriteLayer(w io.Writer, r io.Reader, size int64) (v1.Hash, error) {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return v1.Hash{}, err
	}
	diff := sha256.New()
	if err := writeTar(io.MultiWriter(zw, diff), r, size); err != nil {
		return v1.Hash{}, err
	}
	if err := zw.Close(); err != nil {
		return v1.Hash{}, err
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diff.Sum(nil))}, nil
}

// ReadDisk opens the disk file inside an artifact made by Artifact or
// WriteLayer, and returns it with its size.
func ReadDisk(img v1.Image) (io.ReadCloser, int64, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, 0, err
	}
	if len(layers) != 1 {
		return nil, 0, fmt.Errorf("a disk image artifact has one layer, this one %d", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		return nil, 0, err
	}
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err == nil && h.Name != FileName {
		err = fmt.Errorf("the artifact's layer holds %s, not %s", h.Name, FileName)
	}
	if err != nil {
		rc.Close()
		return nil, 0, err
	}
	return struct {
		io.Reader
		io.Closer
	}{tr, rc}, h.Size, nil
}

// Manifest returns the config and the OCI image manifest of an artifact
// whose one layer (written by WriteLayer) is layer, with diff ID diffID.
func Manifest(layer v1.Descriptor, diffID v1.Hash) (config, manifest []byte, err error) {
	config, err = json.Marshal(v1.ConfigFile{
		OS: "linux", Architecture: runtime.GOARCH,
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
	})
	if err != nil {
		return nil, nil, err
	}
	cfgDigest, cfgSize, err := v1.SHA256(bytes.NewReader(config))
	if err != nil {
		return nil, nil, err
	}
	layer.MediaType = types.OCILayer
	manifest, err = json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: cfgDigest, Size: cfgSize},
		Layers:        []v1.Descriptor{layer},
	})
	return config, manifest, err
}
