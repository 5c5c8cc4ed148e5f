package binaries

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestBinDirIsUsedAsIsAndMissingBinariesAreNamed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, Etcd), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Resolver{BinDir: dir, CacheDir: t.TempDir()}
	p, err := r.Path(context.Background(), Etcd)
	if err != nil || p != filepath.Join(dir, Etcd) {
		t.Errorf("Path(etcd) = %q, %v", p, err)
	}
	_, err = r.Path(context.Background(), KubeAPIServer)
	if err == nil || !strings.Contains(err.Error(), EnvBinDir) || !strings.Contains(err.Error(), KubeAPIServer) {
		t.Errorf("missing binary error = %v, want it to name %s and %s", err, EnvBinDir, KubeAPIServer)
	}
	if _, err := r.Path(context.Background(), "kubelet"); err == nil {
		t.Error("unknown binary accepted")
	}
}

// fakeGo installs a `go` on PATH that "builds" by creating an executable
// per package in the -o directory and counts its invocations.
func fakeGo(t *testing.T) (count func() int) {
	t.Helper()
	bin := t.TempDir()
	counter := filepath.Join(bin, "count")
	script := `#!/bin/sh
echo x >> "` + counter + `"
out=""; prev=""
for a in "$@"; do
  if [ "$prev" = "-o" ]; then out="$a"; fi
  prev="$a"
done
for a in "$@"; do
  case "$a" in
    *cmd/*) touch "$out/$(basename "$a")"; chmod +x "$out/$(basename "$a")";;
    .) touch "$out/etcd"; chmod +x "$out/etcd";;
  esac
done
sleep 0.2
`
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return func() int {
		b, _ := os.ReadFile(counter)
		return bytes.Count(b, []byte("x"))
	}
}

func TestConcurrentResolversBuildEachVersionOnce(t *testing.T) {
	count := fakeGo(t)
	cache := t.TempDir()
	var progress bytes.Buffer
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			var buf bytes.Buffer
			r := &Resolver{CacheDir: cache, Progress: &buf}
			_, err := r.Path(context.Background(), KubeScheduler)
			errs <- err
			mu.Lock()
			progress.Write(buf.Bytes())
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 1 {
		t.Errorf("go build ran %d times for one version, want 1", n)
	}
	for _, b := range []string{KubeAPIServer, KubeControllerManager, KubeScheduler, Kubectl} {
		if _, err := os.Stat(filepath.Join(cache, "kube-"+KubernetesVersion, b)); err != nil {
			t.Errorf("%s not cached: %v", b, err)
		}
	}
	if !strings.Contains(progress.String(), "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl "+KubernetesVersion) {
		t.Errorf("no visible progress line:\n%s", progress.String())
	}
	// A cached version is not rebuilt.
	r := &Resolver{CacheDir: cache}
	if _, err := r.Path(context.Background(), KubeAPIServer); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Errorf("cached binaries rebuilt: %d builds", n)
	}
}

func TestEmbeddedModulesPinTheVersions(t *testing.T) {
	tests := []struct{ file, want string }{
		{"modules/kube.mod", "k8s.io/kubernetes " + KubernetesVersion},
		{"modules/kube.mod", "k8s.io/client-go => k8s.io/client-go v0.37.2"},
		{"modules/etcd.mod", "go.etcd.io/etcd/server/v3 " + EtcdVersion},
		{"modules/kwok.mod", "sigs.k8s.io/kwok " + KwokVersion},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := modules.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), tt.want) {
				t.Errorf("%s does not pin %q", tt.file, tt.want)
			}
		})
	}
}
