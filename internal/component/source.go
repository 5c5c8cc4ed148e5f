package component

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/hitless-dev/hitless/internal/component/manifest"
)

// Source is a component's manifests at one version.
type Source struct {
	// Path is what the user named (-f).
	Path string
	// Kind is file, directory or kustomization.
	Kind    string
	Objects []manifest.Object
	// Warnings are what validation corrected or could not check, such as
	// a namespace on a cluster-scoped object (the API server ignores it;
	// hitless drops it, as kubectl does).
	Warnings []Problem
}

// The kinds of sources.
const (
	KindFile          = "file"
	KindDirectory     = "directory"
	KindKustomization = "kustomization"
)

var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// Load reads a file, a directory of .yaml/.yml/.json files, or a
// directory with a kustomization (built with the kustomize API).
func Load(path string) (*Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, &manifest.Error{File: path, Err: err}
	}
	if !st.IsDir() {
		b, err := os.ReadFile(path) //nolint:gosec // the user names the file
		if err != nil {
			return nil, &manifest.Error{File: path, Err: err}
		}
		objs, err := manifest.Parse(path, bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return &Source{Path: path, Kind: KindFile, Objects: objs}, nil
	}
	for _, k := range kustomizationFiles {
		if _, err := os.Stat(filepath.Join(path, k)); err == nil {
			return build(path, filepath.Join(path, k))
		}
	}
	objs, err := manifest.ReadDir(os.DirFS(path), ".")
	if err != nil {
		return nil, err
	}
	for i := range objs {
		objs[i].File = filepath.Join(path, objs[i].File)
	}
	return &Source{Path: path, Kind: KindDirectory, Objects: objs}, nil
}

// LoadFS reads a bundle of files held in memory (a ConfigMap's keys, an
// artifact's layer), named name in errors and in the release: its
// kustomization built when it has one, else its .yaml/.yml/.json files.
func LoadFS(name string, fsys fs.FS) (*Source, error) {
	for _, k := range kustomizationFiles {
		if _, err := fs.Stat(fsys, k); err == nil {
			return buildFS(name, fsys)
		}
	}
	objs, err := manifest.ReadDir(fsys, ".")
	if err != nil {
		return nil, &manifest.Error{File: name, Err: err}
	}
	for i := range objs {
		objs[i].File = name + ": " + objs[i].File
	}
	return &Source{Path: name, Kind: KindDirectory, Objects: objs}, nil
}

// buildFS copies fsys into kustomize's in-memory file system and builds
// it: a bundle's kustomization reaches nothing outside the bundle.
func buildFS(name string, fsys fs.FS) (*Source, error) {
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/bundle", p), b)
	})
	if err != nil {
		return nil, &manifest.Error{File: name, Err: err}
	}
	return kustomize(mem, "/bundle", name, name)
}

// build runs kustomize on dir; errors name the kustomization file.
func build(dir, file string) (*Source, error) {
	return kustomize(filesys.MakeFsOnDisk(), dir, dir, file)
}

// kustomize builds the kustomization in dir of fsys into the source
// path; errors name file.
func kustomize(fsys filesys.FileSystem, dir, path, file string) (*Source, error) {
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		return nil, &manifest.Error{File: file, Err: fmt.Errorf("kustomize build: %w", err)}
	}
	out, err := res.AsYaml()
	if err != nil {
		return nil, &manifest.Error{File: file, Err: fmt.Errorf("kustomize build: %w", err)}
	}
	objs, err := manifest.Parse(file+" (built)", bytes.NewReader(out))
	if err != nil {
		return nil, err
	}
	return &Source{Path: path, Kind: KindKustomization, Objects: objs}, nil
}

// Problem is one reason a source cannot be applied.
type Problem struct {
	File     string `json:"file"`
	Document int    `json:"document"`
	Object   string `json:"object"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
}

func (p Problem) String() string {
	s := fmt.Sprintf("%s: document %d (%s)", p.File, p.Document, p.Object)
	if p.Field != "" {
		s += ": field " + p.Field
	}
	return s + ": " + p.Message
}

// InvalidError lists every problem found; the commands exit 2 on it.
type InvalidError struct {
	Source   string
	Problems []Problem
}

func (e *InvalidError) Error() string {
	msg := fmt.Sprintf("%s: %d problem(s)", e.Source, len(e.Problems))
	for _, p := range e.Problems {
		msg += "\n  " + p.String()
	}
	return msg
}

// ErrInvalid matches every InvalidError.
var ErrInvalid = errors.New("invalid component")

// Is lets errors.Is(err, ErrInvalid) match.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func problem(o manifest.Object, field, format string, args ...any) Problem {
	return Problem{File: o.File, Document: o.Document, Object: manifest.Ref(o.Unstructured), Field: field, Message: fmt.Sprintf(format, args...)}
}

func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if a.File != b.File {
			if a.File < b.File {
				return -1
			}
			return 1
		}
		return a.Document - b.Document
	})
}
