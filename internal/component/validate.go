package component

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hitless-dev/hitless/internal/component/manifest"
)

// Scope tells namespaced kinds from cluster-scoped ones, and which
// namespaces already exist; the cluster's discovery answers in the
// commands, a table in tests.
type Scope interface {
	// Namespaced reports whether objects of gk live in a namespace; ok is
	// false when the cluster does not know the kind.
	Namespaced(gk schema.GroupKind) (namespaced, ok bool)
	// NamespaceExists reports whether the namespace exists in the cluster.
	NamespaceExists(name string) bool
}

// Checks tune validation.
type Checks struct {
	// MixedVersions allows images at any versions.
	MixedVersions bool
	// OneRelease refuses every image not at the source's release (a
	// profile asks for it); otherwise images of other projects may be at
	// their own versions.
	OneRelease bool
}

// Validate checks a source before anything changes: every kind known (or
// defined by a CRD in the source), every namespaced object with a
// namespace that exists or is in the source, no object twice, and the
// images at one release as the checks define it. It returns an InvalidError listing all problems.
// A namespace on a cluster-scoped object is dropped with a warning.
func Validate(src *Source, scope Scope, checks Checks) error {
	var ps []Problem
	ps = append(ps, namespaces(src, scope)...)
	ps = append(ps, duplicates(src)...)
	if !checks.MixedVersions {
		ps = append(ps, releases(src, checks.OneRelease)...)
	}
	if len(ps) == 0 {
		return nil
	}
	sortProblems(ps)
	return &InvalidError{Source: src.Path, Problems: ps}
}

func key(u *unstructured.Unstructured) string {
	gk := u.GroupVersionKind().GroupKind()
	return gk.String() + "/" + u.GetNamespace() + "/" + u.GetName()
}

func duplicates(src *Source) []Problem {
	seen := map[string]manifest.Object{}
	var ps []Problem
	for _, o := range src.Objects {
		k := key(o.Unstructured)
		if first, ok := seen[k]; ok {
			ps = append(ps, problem(o, "metadata.name", "duplicate object: already defined in %s document %d", first.File, first.Document))
			continue
		}
		seen[k] = o
	}
	return ps
}

// CRDKinds returns the kinds the CRDs among objs define and whether each
// is namespaced.
func CRDKinds(objs []*unstructured.Unstructured) map[schema.GroupKind]bool {
	out := map[schema.GroupKind]bool{}
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		out[schema.GroupKind{Group: group, Kind: kind}] = scope == "Namespaced"
	}
	return out
}

func namespaces(src *Source, scope Scope) []Problem {
	crds := CRDKinds(manifest.Unstructured(src.Objects))
	inSource := map[string]bool{}
	for _, o := range src.Objects {
		if o.GetKind() == "Namespace" && o.GroupVersionKind().Group == "" {
			inSource[o.GetName()] = true
		}
	}
	var ps []Problem
	src.Warnings = nil
	for _, o := range src.Objects {
		gk := o.GroupVersionKind().GroupKind()
		namespaced, ok := crds[gk]
		if !ok {
			namespaced, ok = scope.Namespaced(gk)
		}
		if !ok {
			ps = append(ps, problem(o, "kind", "kind %s is not served by the cluster and no CustomResourceDefinition in the source defines it", gk))
			continue
		}
		ns := o.GetNamespace()
		switch {
		case !namespaced && ns != "":
			src.Warnings = append(src.Warnings, problem(o, "metadata.namespace", "%s is cluster-scoped: namespace %q ignored", gk.Kind, ns))
			o.SetNamespace("")
		case namespaced && ns == "":
			ps = append(ps, problem(o, "metadata.namespace", "%s is namespaced and has no namespace; name one so it cannot land in the wrong place", gk.Kind))
		case namespaced && !inSource[ns] && !scope.NamespaceExists(ns):
			ps = append(ps, problem(o, "metadata.namespace", "namespace %q exists neither in the cluster nor in the source", ns))
		}
	}
	return ps
}

// podSpecPath is where each workload kind keeps its pod spec.
var podSpecPath = map[string][]string{
	"Pod":         {"spec"},
	"Deployment":  {"spec", "template", "spec"},
	"StatefulSet": {"spec", "template", "spec"},
	"DaemonSet":   {"spec", "template", "spec"},
	"ReplicaSet":  {"spec", "template", "spec"},
	"Job":         {"spec", "template", "spec"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template", "spec"},
}

// Image is one container image of the source.
type Image struct {
	Object manifest.Object
	Field  string
	Image  string
	Tag    string // "" when untagged (or by digest only)
}

// Images lists every container image of the source's workloads.
func Images(src *Source) []Image {
	var out []Image
	for _, o := range src.Objects {
		p, ok := podSpecPath[o.GetKind()]
		if !ok {
			continue
		}
		for _, list := range []string{"initContainers", "containers"} {
			cs, _, _ := unstructured.NestedSlice(o.Object, append(slices.Clone(p), list)...)
			for i, c := range cs {
				m, ok := c.(map[string]any)
				if !ok {
					continue
				}
				img, _ := m["image"].(string)
				out = append(out, Image{Object: o, Field: fmt.Sprintf("%s.%s[%d].image", strings.Join(p, "."), list, i), Image: img, Tag: imageTag(img)})
			}
		}
	}
	return out
}

// SplitImage returns an image reference's repository and tag; the tag is
// "" when the reference has none (untagged, or by digest only).
func SplitImage(image string) (repo, tag string) {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	slash := strings.LastIndex(image, "/")
	if i := strings.LastIndex(image, ":"); i > slash {
		return image[:i], image[i+1:]
	}
	return image, ""
}

func imageTag(image string) string {
	_, t := SplitImage(image)
	return t
}
