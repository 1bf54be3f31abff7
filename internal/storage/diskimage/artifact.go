package diskimage

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
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
			tw := tar.NewWriter(pw)
			err := tw.WriteHeader(&tar.Header{
				Name: FileName, Mode: 0o444, Size: st.Size(), Typeflag: tar.TypeReg,
				ModTime: time.Unix(0, 0), Format: tar.FormatPAX,
			})
			if err == nil {
				_, err = io.Copy(tw, f)
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
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
