// Package crds holds the CustomResourceDefinitions of Strata's API kinds, as
// generated from the Go types under api/ by hack/generate.sh, embedded so the
// server can install them at start-up.
package crds

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var manifests embed.FS

// All decodes every embedded CRD manifest, in file-name order. Decoding is
// strict: a field the CRD type does not know is an error, not dropped.
func All() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := fs.Glob(manifests, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("list CRD manifests: %w", err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, name := range files {
		data, err := manifests.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read CRD manifest %s: %w", name, err)
		}
		decoded, err := decode(data)
		if err != nil {
			return nil, fmt.Errorf("decode CRD manifest %s: %w", name, err)
		}
		crds = append(crds, decoded...)
	}
	return crds, nil
}

// decode reads every non-empty YAML document of one manifest file.
func decode(data []byte) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var crds []*apiextensionsv1.CustomResourceDefinition
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return crds, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(doc, crd); err != nil {
			return nil, err
		}
		if crd.Kind != "CustomResourceDefinition" || crd.APIVersion != apiextensionsv1.SchemeGroupVersion.String() {
			return nil, fmt.Errorf("document is a %s %s, not an %s CustomResourceDefinition",
				crd.APIVersion, crd.Kind, apiextensionsv1.SchemeGroupVersion)
		}
		crds = append(crds, crd)
	}
}
