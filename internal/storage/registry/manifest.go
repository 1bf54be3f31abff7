package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"

	"github.com/strata-cloud/strata/internal/storage/blob"
)

// Manifest media types the registry accepts.
const (
	MediaTypeOCIManifest        = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex           = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// maxManifestBytes bounds a manifest body, as the OCI spec suggests.
const maxManifestBytes = 4 << 20

// descriptor is the part of an OCI/Docker descriptor the registry reads.
type descriptor struct {
	MediaType string   `json:"mediaType"`
	Digest    string   `json:"digest"`
	Size      int64    `json:"size"`
	URLs      []string `json:"urls,omitempty"`
}

// manifestDoc covers image manifests and indexes of both OCI and Docker
// schema 2.
type manifestDoc struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        *descriptor  `json:"config"`
	Layers        []descriptor `json:"layers"`
	Manifests     []descriptor `json:"manifests"`
	Subject       *descriptor  `json:"subject"`
}

// parsedManifest is what PUT needs to know about a manifest.
type parsedManifest struct {
	MediaType string
	// Blobs must exist before the manifest is accepted (config and
	// layers of an image manifest).
	Blobs []blob.Digest
	// Children are the manifests an index points to, with their media
	// types; they must exist too.
	Children []descriptor
}

// manifestError is a validation failure with the OCI code to report.
type manifestError struct {
	code   string
	msg    string
	detail map[string]string
}

func (e *manifestError) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &manifestError{code: codeManifestInvalid, msg: fmt.Sprintf(format, args...)}
}

func isIndex(mediaType string) bool {
	return mediaType == MediaTypeOCIIndex || mediaType == MediaTypeDockerManifestList
}

// parseManifest validates a manifest body uploaded with the given
// Content-Type and returns its media type and references. A missing or
// generic Content-Type is resolved from the body.
func parseManifest(contentType string, body []byte) (parsedManifest, error) {
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return parsedManifest{}, invalid("manifest is not valid JSON: %v", err)
	}
	mt := ""
	if contentType != "" {
		parsed, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return parsedManifest{}, invalid("bad Content-Type %q", contentType)
		}
		mt = parsed
	}
	switch mt {
	case "", "application/json", "application/octet-stream":
		switch {
		case doc.MediaType != "":
			mt = doc.MediaType
		case doc.Manifests != nil:
			mt = MediaTypeOCIIndex
		default:
			mt = MediaTypeOCIManifest
		}
	}
	if doc.MediaType != "" && doc.MediaType != mt {
		return parsedManifest{}, invalid("mediaType %q does not match Content-Type %q", doc.MediaType, mt)
	}
	if doc.SchemaVersion != 2 {
		return parsedManifest{}, invalid("schemaVersion %d is not supported (want 2)", doc.SchemaVersion)
	}
	p := parsedManifest{MediaType: mt}
	switch mt {
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
		if doc.Config == nil {
			return parsedManifest{}, invalid("image manifest has no config")
		}
		if doc.Manifests != nil {
			return parsedManifest{}, invalid("image manifest has a manifests list")
		}
		d, err := descDigest(*doc.Config)
		if err != nil {
			return parsedManifest{}, err
		}
		p.Blobs = append(p.Blobs, d)
		for _, l := range doc.Layers {
			d, err := descDigest(l)
			if err != nil {
				return parsedManifest{}, err
			}
			if len(l.URLs) > 0 {
				continue // a foreign layer, fetched from its URLs, not from us
			}
			p.Blobs = append(p.Blobs, d)
		}
	case MediaTypeOCIIndex, MediaTypeDockerManifestList:
		if doc.Config != nil || doc.Layers != nil {
			return parsedManifest{}, invalid("index has config or layers")
		}
		for _, m := range doc.Manifests {
			if _, err := descDigest(m); err != nil {
				return parsedManifest{}, err
			}
			p.Children = append(p.Children, m)
		}
	default:
		return parsedManifest{}, invalid("unsupported manifest media type %q", mt)
	}
	if doc.Subject != nil {
		if _, err := descDigest(*doc.Subject); err != nil {
			return parsedManifest{}, err
		}
	}
	return p, nil
}

// descDigest validates a descriptor's digest and size.
func descDigest(d descriptor) (blob.Digest, error) {
	dg, err := blob.ParseDigest(d.Digest)
	switch {
	case errors.Is(err, blob.ErrUnsupportedDigest):
		// Well-formed, but this registry cannot hold such a blob.
		return "", &manifestError{code: codeManifestBlobUnknown, msg: fmt.Sprintf("unsupported digest %q", d.Digest)}
	case err != nil:
		return "", &manifestError{code: codeDigestInvalid, msg: fmt.Sprintf("invalid digest %q in manifest", d.Digest)}
	}
	if d.Size < 0 {
		return "", invalid("negative size for %s", d.Digest)
	}
	return dg, nil
}
