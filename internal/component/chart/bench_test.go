package chart

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/manifest"
)

func render(b *testing.B, version string, sets ...string) []*unstructured.Unstructured {
	b.Helper()
	c, err := Load(upstreamPath(b, version))
	if err != nil {
		b.Fatal(err)
	}
	vals, err := Values(nil, sets)
	if err != nil {
		b.Fatal(err)
	}
	r, err := Render(context.Background(), c, Options{Release: "cilium", Namespace: "kube-system", Values: vals, Caps: caps}, scope{})
	if err != nil {
		b.Fatal(err)
	}
	return manifest.Unstructured(r.Source.Objects)
}

// BenchmarkRenderCilium renders Cilium's chart as an install or upgrade
// does: load, values against the schema, templates, parse.
func BenchmarkRenderCilium(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		render(b, "1.19.6", "operator.replicas=1")
	}
}

// BenchmarkPortCilium is the upgrade's three-way port of every object of
// Cilium's chart, 1.18.12 to 1.19.6, with a customization on the agent's
// config.
func BenchmarkPortCilium(b *testing.B) {
	orig, next := render(b, "1.18.12"), render(b, "1.19.6")
	user := make([]*unstructured.Unstructured, len(orig))
	for i, o := range orig {
		user[i] = o.DeepCopy()
		if o.GetKind() == "ConfigMap" && o.GetName() == "cilium-config" {
			_ = unstructured.SetNestedField(user[i].Object, "true", "data", "debug")
		}
	}
	b.ReportMetric(float64(len(next)), "objects")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := component.Port(orig, user, next, component.PreferNone); err != nil {
			b.Fatal(err)
		}
	}
}
