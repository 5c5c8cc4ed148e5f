package binaries

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

//go:embed modules
var modules embed.FS

// Pinned versions of the binaries a local cluster runs.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.3"
	KwokVersion       = "v0.8.0"
	// The packet lab's real data planes: kube-router, flannel, and the
	// CNI plugins nodes ship.
	KubeRouterVersion = "v2.1.0"
	FlannelVersion    = "v0.27.4"
	CNIPluginsVersion = "v1.9.1"
)

// Names of the binaries.
const (
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kubectl               = "kubectl"
	Etcd                  = "etcd"
	Kwok                  = "kwok"
	KubeRouter            = "kube-router"
	Flanneld              = "flanneld"
	CNIBridge             = "bridge"
	CNIHostLocal          = "host-local"
	CNILoopback           = "loopback"
)

// EnvBinDir names the environment variable that points at prebuilt binaries.
const EnvBinDir = "HITLESS_BIN_DIR"

// group is a set of binaries built together from one embedded tools module.
type group struct {
	module   string // base name of the embedded files: NAME.mod, NAME.sum
	version  string
	binaries []string
	packages []string // import paths, or "." for the module's own main
	ldflags  string
	lab      bool // the packet lab's, not the control plane's
	cgo      bool // needs cgo (a C compiler on the machine)
}

func groups() []group {
	var kubeLD []string
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		kubeLD = append(kubeLD,
			"-X", p+".gitVersion="+KubernetesVersion,
			"-X", p+".gitMajor=1",
			"-X", p+".gitMinor=37",
			"-X", p+".gitTreeState=clean",
		)
	}
	return []group{
		{
			module:   "kube",
			version:  KubernetesVersion,
			binaries: []string{KubeAPIServer, KubeControllerManager, KubeScheduler, Kubectl},
			packages: []string{
				"k8s.io/kubernetes/cmd/kube-apiserver",
				"k8s.io/kubernetes/cmd/kube-controller-manager",
				"k8s.io/kubernetes/cmd/kube-scheduler",
				"k8s.io/kubernetes/cmd/kubectl",
			},
			ldflags: "-s -w " + strings.Join(kubeLD, " "),
		},
		{
			module:   "etcd",
			version:  EtcdVersion,
			binaries: []string{Etcd},
			packages: []string{"."},
			ldflags:  "-s -w",
		},
		{
			module:   "kwok",
			version:  KwokVersion,
			binaries: []string{Kwok},
			packages: []string{"sigs.k8s.io/kwok/cmd/kwok"},
			ldflags:  "-s -w",
		},
		{
			module:   "kube-router",
			version:  KubeRouterVersion,
			binaries: []string{KubeRouter},
			packages: []string{"github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"},
			ldflags:  "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=" + KubeRouterVersion,
			lab:      true,
		},
		{
			module:   "flannel",
			version:  FlannelVersion,
			binaries: []string{Flanneld},
			packages: []string{"github.com/flannel-io/flannel"},
			ldflags:  "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=" + FlannelVersion,
			lab:      true,
			cgo:      true, // its main imports the UDP backend, written in C

		},
		{
			module:   "cni-plugins",
			version:  CNIPluginsVersion,
			binaries: []string{CNIBridge, CNIHostLocal, CNILoopback},
			packages: []string{
				"github.com/containernetworking/plugins/plugins/main/bridge",
				"github.com/containernetworking/plugins/plugins/ipam/host-local",
				"github.com/containernetworking/plugins/plugins/main/loopback",
			},
			ldflags: "-s -w",
			lab:     true,
		},
	}
}

// Resolver locates binaries: in BinDir when set, else in CacheDir, building
// missing ones with the Go toolchain.
type Resolver struct {
	// BinDir holds prebuilt binaries by name; when set nothing is built.
	BinDir string
	// CacheDir is where built binaries are kept, one directory per version.
	CacheDir string
	// Progress receives one line per build so a user sees why the first
	// run takes minutes. May be nil.
	Progress io.Writer
}

// NewResolver returns a Resolver configured from HITLESS_BIN_DIR and the
// user cache directory.
func NewResolver(progress io.Writer) (*Resolver, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return nil, fmt.Errorf("finding the user cache directory: %w", err)
	}
	return &Resolver{
		BinDir:   os.Getenv(EnvBinDir),
		CacheDir: filepath.Join(cache, "hitless", "bin"),
		Progress: progress,
	}, nil
}

// Path returns the path of the named binary, building it if needed.
func (r *Resolver) Path(ctx context.Context, name string) (string, error) {
	g, ok := groupOf(name)
	if !ok {
		return "", fmt.Errorf("unknown binary %q", name)
	}
	if r.BinDir != "" {
		p := filepath.Join(r.BinDir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s does not hold %s: %w", EnvBinDir, r.BinDir, name, err)
		}
		return p, nil
	}
	dir := filepath.Join(r.CacheDir, g.module+"-"+g.version)
	p := filepath.Join(dir, name)
	if complete(dir, g) {
		return p, nil
	}
	if err := r.build(ctx, g, dir); err != nil {
		return "", err
	}
	return p, nil
}

// All returns the paths of the control plane's binaries, building the
// missing ones.
func (r *Resolver) All(ctx context.Context) (map[string]string, error) {
	return r.paths(ctx, func(g group) bool { return !g.lab })
}

// Lab returns the paths of the packet lab's binaries (its data plane's
// daemons and CNI plugins), building the missing ones.
func (r *Resolver) Lab(ctx context.Context) (map[string]string, error) {
	return r.paths(ctx, func(g group) bool { return g.lab })
}

// Everything returns the paths of every binary, the lab's too.
func (r *Resolver) Everything(ctx context.Context) (map[string]string, error) {
	return r.paths(ctx, func(group) bool { return true })
}

func (r *Resolver) paths(ctx context.Context, want func(group) bool) (map[string]string, error) {
	out := map[string]string{}
	for _, g := range groups() {
		if !want(g) {
			continue
		}
		for _, b := range g.binaries {
			p, err := r.Path(ctx, b)
			if err != nil {
				return nil, err
			}
			out[b] = p
		}
	}
	return out, nil
}

func groupOf(name string) (group, bool) {
	for _, g := range groups() {
		if slices.Contains(g.binaries, name) {
			return g, true
		}
	}
	return group{}, false
}

func complete(dir string, g group) bool {
	for _, b := range g.binaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// build compiles a group under an exclusive file lock, so concurrent test
// packages or commands build each version once.
func (r *Resolver) build(ctx context.Context, g group, dir string) error {
	if err := os.MkdirAll(r.CacheDir, 0o755); err != nil {
		return fmt.Errorf("creating binary cache %s: %w", r.CacheDir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(r.CacheDir, "."+g.module+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if complete(dir, g) { // another process built it while we waited
		return nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building %s %s needs a Go toolchain (none on PATH); install Go 1.26 or set %s to a directory of prebuilt binaries", strings.Join(g.binaries, ", "), g.version, EnvBinDir)
	}
	src, err := os.MkdirTemp(r.CacheDir, "src-"+g.module+"-")
	if err != nil {
		return fmt.Errorf("creating build directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(src) }()
	if err := writeModule(g, src); err != nil {
		return err
	}
	out := filepath.Join(src, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return fmt.Errorf("creating build output: %w", err)
	}

	start := time.Now()
	r.progressf("building %s %s with %s (first use; cached in %s) ...\n", strings.Join(g.binaries, ", "), g.version, goBin, dir)
	args := append([]string{"build", "-trimpath", "-ldflags", g.ldflags, "-o", out + string(os.PathSeparator)}, g.packages...)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = src
	cgo := "CGO_ENABLED=0"
	if g.cgo {
		cgo = "CGO_ENABLED=1"
	}
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", cgo)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	done := make(chan struct{})
	go r.tick(done, start, g)
	err = cmd.Run()
	close(done)
	if err != nil {
		return fmt.Errorf("building %s %s: %w\n%s", strings.Join(g.binaries, ", "), g.version, err, lastLines(stderr.String(), 30))
	}
	// go build names a binary after its package's last element, a
	// module's own main after the module's: some are known by another
	// name (flannel's is flanneld).
	for i, pkg := range g.packages {
		built := path.Base(pkg)
		if pkg == "." {
			built = g.module
		}
		if built == g.binaries[i] {
			continue
		}
		if err := os.Rename(filepath.Join(out, built), filepath.Join(out, g.binaries[i])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("naming %s: %w", g.binaries[i], err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("replacing %s: %w", dir, err)
	}
	if err := os.Rename(out, dir); err != nil {
		return fmt.Errorf("installing %s: %w", dir, err)
	}
	if !complete(dir, g) {
		return fmt.Errorf("building %s %s: binaries missing from %s after the build", strings.Join(g.binaries, ", "), g.version, dir)
	}
	r.progressf("built %s %s in %s\n", strings.Join(g.binaries, ", "), g.version, time.Since(start).Round(time.Second))
	return nil
}

func (r *Resolver) tick(done <-chan struct{}, start time.Time, g group) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			r.progressf("  still building %s %s (%s)\n", g.module, g.version, time.Since(start).Round(time.Second))
		}
	}
}

func (r *Resolver) progressf(format string, args ...any) {
	if r.Progress != nil {
		_, _ = fmt.Fprintf(r.Progress, format, args...)
	}
	klog.V(2).InfoS("binaries", "message", strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func writeModule(g group, dir string) error {
	files := map[string]string{
		"go.mod": g.module + ".mod",
		"go.sum": g.module + ".sum",
	}
	if slices.Contains(g.packages, ".") {
		files["main.go"] = g.module + ".go.txt"
	}
	for dst, src := range files {
		b, err := modules.ReadFile("modules/" + src)
		if err != nil {
			return fmt.Errorf("reading embedded %s: %w", src, err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", dst, err)
		}
	}
	return nil
}

// lockFile takes an exclusive flock, polling so ctx can cancel the wait.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
