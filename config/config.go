package config

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

//go:embed crd/*.yaml
var files embed.FS

// CRDs returns the CustomResourceDefinitions, sorted by file name.
func CRDs() ([]*unstructured.Unstructured, error) {
	names, err := fs.Glob(files, "crd/*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]*unstructured.Unstructured, 0, len(names))
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path.Base(name), err)
		}
		out = append(out, u)
	}
	return out, nil
}
