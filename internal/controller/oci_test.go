package controller

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"path"
	"strings"
	"testing"
)

func layer(t testing.TB, entries []tar.Header, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}

func TestUntar(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []tar.Header
		want    []string
		err     string
	}{
		{"files and a directory", []tar.Header{{Name: "./a.yaml", Typeflag: tar.TypeReg}, {Name: "sub/", Typeflag: tar.TypeDir}, {Name: "sub/b.yaml", Typeflag: tar.TypeReg}}, []string{"a.yaml", "sub/b.yaml"}, ""},
		{"links are not files", []tar.Header{{Name: "a.yaml", Typeflag: tar.TypeReg}, {Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}}, []string{"a.yaml"}, ""},
		{"outside the root", []tar.Header{{Name: "../evil.yaml", Typeflag: tar.TypeReg}}, nil, "outside its root"},
		{"absolute", []tar.Header{{Name: "/etc/evil.yaml", Typeflag: tar.TypeReg}}, nil, "outside its root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string][]byte{}
			size := 0
			err := untar(bytes.NewReader(layer(t, tc.entries, "x: 1\n")), files, &size)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != len(tc.want) {
				t.Fatalf("files %v, want %v", files, tc.want)
			}
			for _, w := range tc.want {
				if string(files[w]) != "x: 1\n" {
					t.Errorf("%s: %q", w, files[w])
				}
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		size := maxArtifactBytes - 2
		err := untar(bytes.NewReader(layer(t, []tar.Header{{Name: "a.yaml", Typeflag: tar.TypeReg}}, "x: 1\n")), map[string][]byte{}, &size)
		if err == nil || !strings.Contains(err.Error(), "unpacks to over") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestDropTopDir(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{[]string{"chart/Chart.yaml", "chart/templates/a.yaml"}, []string{"Chart.yaml", "templates/a.yaml"}},
		{[]string{"Chart.yaml", "templates/a.yaml"}, []string{"Chart.yaml", "templates/a.yaml"}},
		{[]string{"a/x.yaml", "b/y.yaml"}, []string{"a/x.yaml", "b/y.yaml"}},
	} {
		files := map[string][]byte{}
		for _, p := range tc.in {
			files[p] = nil
		}
		got := dropTopDir(files)
		for _, w := range tc.want {
			if _, ok := got[w]; !ok {
				t.Errorf("dropTopDir(%v) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

// FuzzUntar: whatever a registry serves, untar returns an error or files
// at clean relative paths inside the root, within the limits.
func FuzzUntar(f *testing.F) {
	f.Add(layer(f, []tar.Header{{Name: "a.yaml", Typeflag: tar.TypeReg}}, "x: 1\n"))
	f.Add(layer(f, []tar.Header{{Name: "../a", Typeflag: tar.TypeReg}}, "x"))
	f.Add([]byte{0x1f, 0x8b, 0x08})
	f.Fuzz(func(t *testing.T, b []byte) {
		files := map[string][]byte{}
		size := 0
		if err := untar(bytes.NewReader(b), files, &size); err != nil {
			return
		}
		total := 0
		for p, c := range files {
			if p != path.Clean(p) || strings.HasPrefix(p, "../") || path.IsAbs(p) || p == "." {
				t.Fatalf("untar kept %q", p)
			}
			total += len(c)
		}
		if total != size || size > maxArtifactBytes || len(files) > maxArtifactFiles {
			t.Fatalf("%d files of %d bytes (counted %d)", len(files), total, size)
		}
	})
}
