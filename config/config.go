package config

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

//go:embed crd/*.yaml rbac/*.yaml manager/*.yaml agent/*.yaml components/*.yaml default/*.yaml
var files embed.FS

// Render builds the kustomization base (crd, rbac, manager, agent or
// default, which is all of them) with the controller's image set to image (empty
// keeps the base's), as `kustomize build` would, and returns the YAML.
func Render(base, image string) ([]byte, error) {
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile("/"+p, b)
	})
	if err != nil {
		return nil, err
	}
	dir := "/" + base
	if image != "" {
		// A kustomization of our own on top of the base, as `kustomize
		// edit set image` would write.
		k := fmt.Sprintf("resources:\n- ../%s\nsortOptions:\n  order: legacy\nimages:\n- name: ghcr.io/hitless-dev/hitless\n%s", base, imageFields(image))
		if err := mem.WriteFile("/overlay/kustomization.yaml", []byte(k)); err != nil {
			return nil, err
		}
		dir = "/overlay"
	}
	opts := krusty.MakeDefaultOptions()
	opts.PluginConfig = types.DisabledPluginConfig()
	opts.Reorder = krusty.ReorderOptionUnspecified // the kustomizations sort (legacy: namespaces first)
	res, err := krusty.MakeKustomizer(opts).Run(mem, dir)
	if err != nil {
		return nil, fmt.Errorf("building config/%s: %w", base, err)
	}
	return res.AsYaml()
}

// Objects is Render's output as objects.
func Objects(base, image string) ([]*unstructured.Unstructured, error) {
	b, err := Render(base, image)
	if err != nil {
		return nil, err
	}
	return Decode(b)
}

// imageFields are the kustomization image fields of ref: its name, and
// its digest or tag.
func imageFields(ref string) string {
	if name, digest, ok := strings.Cut(ref, "@"); ok {
		return fmt.Sprintf("  newName: %q\n  digest: %q\n", name, digest)
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return fmt.Sprintf("  newName: %q\n  newTag: %q\n", ref[:i], ref[i+1:])
	}
	return fmt.Sprintf("  newName: %q\n", ref)
}

// Decode splits a multi-document YAML into objects.
func Decode(b []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}
