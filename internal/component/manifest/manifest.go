package manifest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Error is a problem in one document of one file.
type Error struct {
	File     string
	Document int    // 1-based index of the YAML document in the file
	Object   string // Kind/name when known
	Field    string // when known
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Document > 0 {
		fmt.Fprintf(&b, ": document %d", e.Document)
	}
	if e.Object != "" {
		fmt.Fprintf(&b, " (%s)", e.Object)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Object is a parsed object with where it came from.
type Object struct {
	*unstructured.Unstructured
	File     string
	Document int
}

// Ref names an object as Kind/namespace/name or Kind/name.
func Ref(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return u.GetKind() + "/" + ns + "/" + u.GetName()
	}
	return u.GetKind() + "/" + u.GetName()
}

// Parse reads every object of a multi-document YAML stream. Documents are
// numbered from 1 by their "---" separators, empty ones included, so the
// number matches what a user counts in the file. Empty documents are
// skipped; List kinds are expanded.
func Parse(file string, r io.Reader) ([]Object, error) {
	docs, err := splitDocuments(r)
	if err != nil {
		return nil, &Error{File: file, Document: len(docs) + 1, Err: err}
	}
	var out []Object
	for i, raw := range docs {
		doc := i + 1
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal(raw, &m); err != nil {
			return nil, &Error{File: file, Document: doc, Err: fmt.Errorf("not valid YAML: %w", err)}
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if err := validate(u); err != nil {
			return nil, &Error{File: file, Document: doc, Object: describe(u), Field: err.field, Err: err}
		}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, &Error{File: file, Document: doc, Object: describe(u), Field: "items", Err: err}
			}
			for i := range list.Items {
				item := &list.Items[i]
				if err := validate(item); err != nil {
					return nil, &Error{File: file, Document: doc, Object: describe(item), Field: fmt.Sprintf("items[%d].%s", i, err.field), Err: err}
				}
				out = append(out, Object{Unstructured: item, File: file, Document: doc})
			}
			continue
		}
		out = append(out, Object{Unstructured: u, File: file, Document: doc})
	}
	return out, nil
}

// splitDocuments splits a YAML stream on lines that are exactly "---"
// (trailing spaces or a comment allowed), as kubectl does.
func splitDocuments(r io.Reader) ([][]byte, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	var docs [][]byte
	var cur bytes.Buffer
	for sc.Scan() {
		line := sc.Bytes()
		if isSeparator(line) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return docs, err
	}
	return append(docs, cur.Bytes()), nil
}

func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := bytes.TrimSpace(line[3:])
	return len(rest) == 0 || rest[0] == '#'
}

type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.msg }

func validate(u *unstructured.Unstructured) *fieldError {
	if _, ok := u.Object["apiVersion"].(string); !ok || u.GetAPIVersion() == "" {
		return &fieldError{"apiVersion", "missing or not a string"}
	}
	if _, ok := u.Object["kind"].(string); !ok || u.GetKind() == "" {
		return &fieldError{"kind", "missing or not a string"}
	}
	if u.IsList() {
		return nil
	}
	md, ok := u.Object["metadata"].(map[string]any)
	if !ok {
		return &fieldError{"metadata", "missing or not a map"}
	}
	if name, ok := md["name"].(string); !ok || name == "" {
		if _, gen := md["generateName"]; !gen {
			return &fieldError{"metadata.name", "missing or not a string"}
		}
	}
	if ns, present := md["namespace"]; present {
		if _, ok := ns.(string); !ok {
			return &fieldError{"metadata.namespace", "not a string"}
		}
	}
	for _, f := range []string{"labels", "annotations"} {
		v, present := md[f]
		if !present || v == nil {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return &fieldError{"metadata." + f, "not a map"}
		}
		for k, val := range m {
			if _, ok := val.(string); !ok {
				return &fieldError{"metadata." + f + "." + k, "value is not a string"}
			}
		}
	}
	return nil
}

func describe(u *unstructured.Unstructured) string {
	kind, _ := u.Object["kind"].(string)
	var name string
	if md, ok := u.Object["metadata"].(map[string]any); ok {
		name, _ = md["name"].(string)
	}
	switch {
	case kind != "" && name != "":
		return kind + "/" + name
	case kind != "":
		return kind
	default:
		return ""
	}
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// ReadDir parses every .yaml, .yml and .json file directly in dir of fsys,
// in name order.
func ReadDir(fsys fs.FS, dir string) ([]Object, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		switch path.Ext(e.Name()) {
		case ".yaml", ".yml", ".json":
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	var out []Object
	for _, n := range names {
		p := path.Join(dir, n)
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		objs, err := Parse(p, bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// Unstructured returns the bare objects.
func Unstructured(objs []Object) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		out[i] = o.Unstructured
	}
	return out
}
