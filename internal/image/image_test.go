package image

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestBuildRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, binary, want string
	}{
		{"a missing binary", filepath.Join(t.TempDir(), "nope"), "reading the binary"},
		{"a dynamically linked binary", "/bin/sh", "CGO_ENABLED=0"},
		{"a file that is no binary", "image.go", "not a Linux binary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Build(Options{Binary: tc.binary}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build(%s): %v; want an error saying %q", tc.binary, err, tc.want)
			}
		})
	}
}

// untar extracts an archive into dir (regular files and directories only:
// all an image layout or this image's layer holds).
func untar(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
			t.Fatalf("archive entry %q leaves the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode)&os.ModePerm|os.ModeSticky); err != nil {
				t.Fatal(err)
			}
			_ = os.Chmod(p, os.FileMode(h.Mode&0o777)|modeSticky(h.Mode))
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode&0o777))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil { //nolint:gosec // the test's own archive
				t.Fatal(err)
			}
			_ = f.Close()
		default:
			t.Fatalf("unexpected archive entry %q of type %c", h.Name, h.Typeflag)
		}
	}
}

func modeSticky(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

// The image built from the real binary: the archive is a valid OCI layout
// naming the image, whose config runs the binary as a non-root user, and
// whose filesystem, alone (chroot, as root), runs it.
func TestImageEntrypointRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the hitless binary (skipped under -short)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "hitless")
	// Without -trimpath (hack/image.sh's release build has it): a build
	// with the tests' own flags takes the packages from the build cache,
	// where hack/test.sh, which builds with CGO_ENABLED=0, left them.
	build := exec.Command("go", "build", "-o", bin, "github.com/hitless-dev/hitless/cmd/hitless")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building hitless: %v\n%s", err, out)
	}
	img, err := Build(Options{Binary: bin, Labels: map[string]string{"org.opencontainers.image.version": "test"}})
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "image.tar")
	const ref = "registry.test/hitless:v0.0.0-test"
	if err := WriteArchive(archive, img, ref); err != nil {
		t.Fatal(err)
	}

	// Read it back as a runtime would: the layout, the index, the image.
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(dir, "layout")
	untar(t, f, lay)
	_ = f.Close()
	idx, err := layout.ImageIndexFromPath(lay)
	if err != nil {
		t.Fatalf("reading the archive as an OCI layout: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != ref {
		t.Fatalf("index %+v; want one image named %s", im.Manifests, ref)
	}
	back, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(back); err != nil {
		t.Fatalf("the image does not validate: %v", err)
	}
	cf, err := back.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != Entrypoint || cf.Config.User != User {
		t.Errorf("config: os %s, entrypoint %v, user %q", cf.OS, cf.Config.Entrypoint, cf.Config.User)
	}

	// Its filesystem alone runs the entrypoint.
	root := filepath.Join(dir, "root")
	fsys := mutate.Extract(back)
	untar(t, fsys, root)
	_ = fsys.Close()
	run := exec.Command(filepath.Join(root, Entrypoint), "version", "-o", "json")
	if os.Geteuid() == 0 {
		// Nothing of this machine's: the image's root, its user.
		run = exec.Command(Entrypoint, "version", "-o", "json")
		run.Dir = "/"
		run.Env = cf.Config.Env
		run.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	} else {
		t.Log("not root: the entrypoint runs from the extracted image without chroot")
	}
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the entrypoint: %v\n%s", err, out)
	}
	var v struct{ Go, Platform string }
	if err := json.Unmarshal(out, &v); err != nil || !strings.HasPrefix(v.Go, "go1.") || v.Platform != "linux/"+cf.Architecture {
		t.Errorf("`hitless version -o json` in the image printed %s (%v)", out, err)
	}
}
