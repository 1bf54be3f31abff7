package crds

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// celValidator compiles the CEL rules of a CRD's storage version.
func celValidator(t *testing.T, name string) *cel.Validator {
	t.Helper()
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range all {
		if crd.Name != name {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if !v.Storage {
				continue
			}
			internal := &apiextensions.JSONSchemaProps{}
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, internal, nil); err != nil {
				t.Fatal(err)
			}
			s, err := schema.NewStructural(internal)
			if err != nil {
				t.Fatal(err)
			}
			return cel.NewValidator(s, true, celconfig.PerCallLimit)
		}
	}
	t.Fatalf("no CRD %s", name)
	return nil
}

func celErrors(t *testing.T, v *cel.Validator, obj, old string) string {
	t.Helper()
	decode := func(s string) any {
		if s == "" {
			return nil
		}
		data, err := yaml.YAMLToJSON([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any // integers as int64, as the API server decodes them
		if err := utiljson.Unmarshal(data, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	errs, _ := v.Validate(context.Background(), field.NewPath(""), nil, decode(obj), decode(old), celconfig.RuntimeCELCostBudget)
	if len(errs) == 0 {
		return ""
	}
	return errs.ToAggregate().Error()
}

// TestVirtualMachinePoolRules runs the pool's CEL rules as the API server
// does, over valid and invalid pools.
func TestVirtualMachinePoolRules(t *testing.T) {
	v := celValidator(t, "virtualmachinepools.compute.strata.io")
	const template = `template: {metadata: {labels: {app: web, tier: front}}, spec: {flavor: m1, image: debian}}`
	pool := func(spec string) string { return "spec: {" + spec + "}" }
	for _, c := range []struct{ name, obj, old, want string }{
		{"matching labels", pool(`selector: {matchLabels: {app: web}}, ` + template), "", ""},
		{"matching expressions", pool(`selector: {matchExpressions: [{key: app, operator: In, values: [web]}]}, ` + template), "", ""},
		{"other label value", pool(`selector: {matchLabels: {app: db}}, ` + template), "", "selector does not match template labels"},
		{"label absent", pool(`selector: {matchLabels: {zone: a}}, ` + template), "", "selector does not match template labels"},
		{"no template labels", pool(`selector: {matchLabels: {app: web}}, template: {spec: {flavor: m1, image: debian}}`), "", "selector does not match template labels"},
		{"empty selector", pool(`selector: {}, ` + template), "", "an empty selector would select every VM"},
		{"both limits 0", pool(`selector: {matchLabels: {app: web}}, strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: "0%"}}, ` + template), "", "cannot both be 0"},
		{"surge only", pool(`selector: {matchLabels: {app: web}}, strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}, ` + template), "", ""},
		{"percentages", pool(`selector: {matchLabels: {app: web}}, strategy: {rollingUpdate: {maxUnavailable: "25%", maxSurge: "50%"}}, ` + template), "", ""},
		{"bad percentage", pool(`selector: {matchLabels: {app: web}}, strategy: {rollingUpdate: {maxUnavailable: "lots"}}, ` + template), "", "must be a non-negative number or a percentage"},
		{"negative limit", pool(`selector: {matchLabels: {app: web}}, strategy: {rollingUpdate: {maxSurge: -1}}, ` + template), "", "must be a non-negative number or a percentage"},
		{"selector changed", pool(`selector: {matchLabels: {tier: front}}, ` + template), pool(`selector: {matchLabels: {app: web}}, ` + template), "selector is immutable"},
		{"image changed", pool(`selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: {flavor: m1, image: ubuntu}}`), pool(`selector: {matchLabels: {app: web}}, ` + template), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := celErrors(t, v, c.obj, c.old)
			switch {
			case c.want == "" && got != "":
				t.Errorf("rejected: %s", got)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Errorf("errors %q, want one containing %q", got, c.want)
			}
		})
	}
}

// TestVirtualMachineImageImmutable: a VM's image cannot change (the rule
// sits on VirtualMachine.spec, not on the spec type a pool template shares).
func TestVirtualMachineImageImmutable(t *testing.T) {
	v := celValidator(t, "virtualmachines.compute.strata.io")
	old := `spec: {flavor: m1, image: debian}`
	if got := celErrors(t, v, `spec: {flavor: m1, image: ubuntu}`, old); !strings.Contains(got, "image cannot change") {
		t.Errorf("changing a VM's image: errors %q, want image cannot change", got)
	}
	if got := celErrors(t, v, `spec: {flavor: m2, image: debian}`, old); got != "" {
		t.Errorf("changing a VM's flavor: %s", got)
	}
}

// TestVirtualMachineNetworkRules: a VM's network entry names a network
// or a port, never both, never neither.
func TestVirtualMachineNetworkRules(t *testing.T) {
	v := celValidator(t, "virtualmachines.compute.strata.io")
	for _, c := range []struct{ networks, want string }{
		{`[{network: net1}]`, ""},
		{`[{port: port1}]`, ""},
		{`[{network: net1, port: port1}]`, "set exactly one of network and port"},
		{`[{}]`, "set exactly one of network and port"},
	} {
		got := celErrors(t, v, `spec: {flavor: m1, image: debian, networks: `+c.networks+`}`, "")
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("networks %s: errors %q, want %q", c.networks, got, c.want)
		}
	}
}
