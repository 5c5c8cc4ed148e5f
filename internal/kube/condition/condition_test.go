package condition

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

type oneSchema struct {
	gvk schema.GroupVersionKind
	s   *spec.Schema
}

func (o oneSchema) ResolveSchema(gvk schema.GroupVersionKind) (*spec.Schema, error) {
	if gvk != o.gvk {
		return nil, fmt.Errorf("kind %s: %w", gvk.Kind, resolver.ErrSchemaNotFound)
	}
	return o.s, nil
}

func networkSchema() *spec.Schema {
	str := *spec.StringProperty()
	return &spec.Schema{SchemaProps: spec.SchemaProps{
		Type: []string{"object"},
		Properties: map[string]spec.Schema{
			"spec": {SchemaProps: spec.SchemaProps{Type: []string{"object"}, Properties: map[string]spec.Schema{
				"networkType": str,
			}}},
			"status": {SchemaProps: spec.SchemaProps{Type: []string{"object"}, Properties: map[string]spec.Schema{
				"networkType": str,
			}}},
		},
	}}
}

var network = schema.GroupVersionKind{Group: "config.openshift.io", Version: "v1", Kind: "Network"}

func TestCompile(t *testing.T) {
	c := NewCompiler(oneSchema{gvk: network, s: networkSchema()})
	tests := []struct {
		name    string
		gvk     schema.GroupVersionKind
		expr    string
		string  bool
		wantErr string
		checked bool
	}{
		{name: "field of the schema", gvk: network, expr: `object.spec.networkType == "OVNKubernetes"`, checked: true},
		{name: "field the schema lacks", gvk: network, expr: `object.spec.networkTyp == "OVNKubernetes"`, wantErr: "undefined field 'networkTyp'"},
		{name: "syntax", gvk: network, expr: `object.spec.networkType ==`, wantErr: "Syntax error"},
		{name: "not a bool", gvk: network, expr: `object.spec.networkType`, wantErr: "want bool"},
		{name: "message", gvk: network, expr: `"type " + object.spec.networkType`, string: true, checked: true},
		{name: "unknown kind is dyn", gvk: schema.GroupVersionKind{Version: "v1", Kind: "Other"}, expr: `object.anything == 1`},
		{name: "params only", expr: `params.mtu > 0`},
		{name: "empty", gvk: network, expr: "  ", wantErr: "empty"},
		{name: "kubernetes library", expr: `isCIDR(params.subnet) && cidr(params.subnet).prefixLength() >= 8`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			compile := c.Bool
			if tc.string {
				compile = c.String
			}
			p, err := compile(tc.gvk, tc.expr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Checked != tc.checked {
				t.Errorf("checked = %v, want %v", p.Checked, tc.checked)
			}
		})
	}
}

func TestEval(t *testing.T) {
	c := NewCompiler(oneSchema{gvk: network, s: networkSchema()})
	p, err := c.Bool(network, `object.status.networkType == params.want`)
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{"status": map[string]any{"networkType": "OVNKubernetes"}}
	tests := []struct {
		name    string
		obj     map[string]any
		want    string
		got     bool
		wantErr bool
	}{
		{name: "true", obj: obj, want: "OVNKubernetes", got: true},
		{name: "false", obj: obj, want: "OpenShiftSDN", got: false},
		{name: "missing field", obj: map[string]any{}, want: "OVNKubernetes", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.True(context.Background(), tc.obj, map[string]any{"want": tc.want})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.got {
				t.Errorf("got %v, want %v", got, tc.got)
			}
		})
	}
}

// A translation gives a map of JSON values whatever the types inside:
// numbers, lists and nested objects come out as a decoded JSON document.
func TestMap(t *testing.T) {
	c := NewCompiler(nil)
	tests := []struct {
		name    string
		expr    string
		obj     map[string]any
		want    string
		wantErr string
	}{
		{name: "renamed and nested", expr: `{"spec": {"bgp": dyn({"asn": object.spec.as}), "tags": dyn(object.spec.tags)}}`,
			obj: map[string]any{"spec": map[string]any{"as": int64(64512), "tags": []any{"a", "b"}}}, want: `{"spec":{"bgp":{"asn":64512},"tags":["a","b"]}}`},
		{name: "a default for a missing field", expr: `{"aging": has(object.spec.aging) ? object.spec.aging : 180}`,
			obj: map[string]any{"spec": map[string]any{}}, want: `{"aging":180}`},
		{name: "missing field", expr: `{"a": object.spec.nope}`, obj: map[string]any{"spec": map[string]any{}}, wantErr: "no such key"},
		{name: "not a map", expr: `"text"`, wantErr: "want map"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := c.Map(schema.GroupVersionKind{}, tc.expr)
			if err == nil {
				var v any
				v, err = p.Eval(context.Background(), tc.obj, nil)
				if err == nil {
					b, _ := json.Marshal(v)
					if string(b) != tc.want {
						t.Errorf("got %s, want %s", b, tc.want)
					}
				}
			}
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
