package ociimage

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push uploads an archive's image (or index, with all its platforms) to dst
// through rt, which carries the TLS trust and client certificate, and
// returns the pushed manifest's digest. Blobs the registry already holds
// are not sent again.
func Push(ctx context.Context, ai ArchiveImage, dst name.Reference, rt http.RoundTripper) (v1.Hash, error) {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt)}
	switch {
	case ai.Index != nil:
		if err := remote.WriteIndex(dst, ai.Index, opts...); err != nil {
			return v1.Hash{}, err
		}
		return ai.Index.Digest()
	case ai.Image != nil:
		if err := remote.Write(dst, ai.Image, opts...); err != nil {
			return v1.Hash{}, err
		}
		return ai.Image.Digest()
	}
	return v1.Hash{}, fmt.Errorf("push %s: no image", dst)
}
