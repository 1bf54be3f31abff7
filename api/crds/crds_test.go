package crds

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
)

// TestAllDecode checks what every Strata CRD must satisfy.
func TestAllDecode(t *testing.T) {
	crds, err := All()
	if err != nil {
		t.Fatalf("All: %v", err)
	}
	if len(crds) == 0 {
		t.Fatal("All returned no CRDs")
	}
	seen := map[string]bool{}
	for _, crd := range crds {
		t.Run(crd.Name, func(t *testing.T) {
			if seen[crd.Name] {
				t.Errorf("CRD %s appears twice", crd.Name)
			}
			seen[crd.Name] = true
			if !strings.HasSuffix(crd.Spec.Group, ".strata.io") {
				t.Errorf("group %q does not end in .strata.io", crd.Spec.Group)
			}
			if want := crd.Spec.Names.Plural + "." + crd.Spec.Group; crd.Name != want {
				t.Errorf("name %q, want %q", crd.Name, want)
			}
			storage := 0
			for _, v := range crd.Spec.Versions {
				if v.Storage {
					storage++
				}
				if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
					t.Errorf("version %s has no OpenAPI schema", v.Name)
				}
				if len(v.AdditionalPrinterColumns) == 0 {
					t.Errorf("version %s has no printer columns", v.Name)
				}
			}
			if storage != 1 {
				t.Errorf("%d storage versions, want 1", storage)
			}
		})
	}
}

// TestKinds checks each kind's own choices.
func TestKinds(t *testing.T) {
	tests := []struct {
		name    string
		version string
		scope   apiextensionsv1.ResourceScope
		columns []string
		// minimums maps a dotted path below the schema root to its minimum.
		minimums map[string]float64
		required map[string][]string
	}{
		{
			name:    "flavors." + computev1alpha1.GroupVersion.Group,
			version: computev1alpha1.GroupVersion.Version,
			scope:   apiextensionsv1.ClusterScoped,
			columns: []string{"VCPUS", "RAM (MiB)", "DISK (GiB)", "PUBLIC", "AGE"},
			minimums: map[string]float64{
				"spec.vcpus":   1,
				"spec.ramMiB":  16,
				"spec.diskGiB": 0,
				"spec.swapMiB": 0,
			},
			required: map[string][]string{"spec": {"ramMiB", "vcpus"}},
		},
		{
			name:    "virtualmachinepools." + computev1alpha1.GroupVersion.Group,
			version: computev1alpha1.GroupVersion.Version,
			scope:   apiextensionsv1.NamespaceScoped,
			columns: []string{"DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"},
			minimums: map[string]float64{
				"spec.replicas":             0,
				"spec.revisionHistoryLimit": 0,
			},
			required: map[string][]string{"spec": {"selector", "template"}, "spec.template": {"spec"}},
		},
	}

	crds, err := All()
	if err != nil {
		t.Fatalf("All: %v", err)
	}
	byName := map[string]*apiextensionsv1.CustomResourceDefinition{}
	for _, crd := range crds {
		byName[crd.Name] = crd
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			crd, ok := byName[tt.name]
			if !ok {
				t.Fatalf("no CRD %s", tt.name)
			}
			if crd.Spec.Scope != tt.scope {
				t.Errorf("scope %s, want %s", crd.Spec.Scope, tt.scope)
			}
			version := findVersion(crd, tt.version)
			if version == nil {
				t.Fatalf("no version %s", tt.version)
			}
			var columns []string
			for _, c := range version.AdditionalPrinterColumns {
				columns = append(columns, c.Name)
			}
			if got, want := strings.Join(columns, ","), strings.Join(tt.columns, ","); got != want {
				t.Errorf("printer columns %s, want %s", got, want)
			}
			root := version.Schema.OpenAPIV3Schema
			for path, want := range tt.minimums {
				prop := schemaAt(root, path)
				if prop == nil {
					t.Errorf("%s: not in schema", path)
					continue
				}
				if prop.Minimum == nil || *prop.Minimum != want {
					t.Errorf("%s: minimum %v, want %v", path, prop.Minimum, want)
				}
			}
			for path, want := range tt.required {
				prop := schemaAt(root, path)
				if prop == nil {
					t.Errorf("%s: not in schema", path)
					continue
				}
				if got := strings.Join(prop.Required, ","); got != strings.Join(want, ",") {
					t.Errorf("%s: required %s, want %s", path, got, strings.Join(want, ","))
				}
			}
		})
	}
}

func findVersion(crd *apiextensionsv1.CustomResourceDefinition, name string) *apiextensionsv1.CustomResourceDefinitionVersion {
	for i := range crd.Spec.Versions {
		if crd.Spec.Versions[i].Name == name {
			return &crd.Spec.Versions[i]
		}
	}
	return nil
}

// schemaAt follows a dotted property path such as "spec.vcpus".
func schemaAt(root *apiextensionsv1.JSONSchemaProps, path string) *apiextensionsv1.JSONSchemaProps {
	s := root
	for _, name := range strings.Split(path, ".") {
		prop, ok := s.Properties[name]
		if !ok {
			return nil
		}
		s = &prop
	}
	return s
}

// TestVirtualMachinePoolScale: kubectl scale works on pools through the
// scale subresource, with the selector an autoscaler needs.
func TestVirtualMachinePoolScale(t *testing.T) {
	crds, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds {
		if crd.Name != "virtualmachinepools."+computev1alpha1.GroupVersion.Group {
			continue
		}
		v := findVersion(crd, computev1alpha1.GroupVersion.Version)
		if v == nil || v.Subresources == nil || v.Subresources.Scale == nil || v.Subresources.Status == nil {
			t.Fatalf("virtualmachinepools lacks the status and scale subresources")
		}
		sc := v.Subresources.Scale
		if sc.SpecReplicasPath != ".spec.replicas" || sc.StatusReplicasPath != ".status.replicas" || sc.LabelSelectorPath == nil || *sc.LabelSelectorPath != ".status.selector" {
			t.Errorf("scale subresource %+v", sc)
		}
		return
	}
	t.Fatal("no virtualmachinepools CRD")
}
