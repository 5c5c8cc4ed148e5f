package kubelet

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Mount is a bind mount into a container's root.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Container is what `hitless cluster enter` runs: a program in a network
// namespace, with a root of its own (the host's, seen through an overlay
// whose changes live in memory and die with it, as a container's writable
// layer does) and the node's and the pod's directories bound into it.
type Container struct {
	// NetNS is the path of the network namespace to run in.
	NetNS string `json:"netns"`
	// Scratch is a directory for the root's mount points; it is emptied
	// first.
	Scratch string   `json:"scratch"`
	Mounts  []Mount  `json:"mounts"`
	Argv    []string `json:"argv"`
	Env     []string `json:"env"`
	Dir     string   `json:"dir,omitempty"`
	// Parent is the lab kubelet's pid: the container dies with it.
	Parent int `json:"parent"`
}

// ReadContainer reads a container spec written by the lab kubelet.
func ReadContainer(path string) (Container, error) {
	var c Container
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("reading container spec: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("container spec %s: %w", path, err)
	}
	if len(c.Argv) == 0 || c.Scratch == "" {
		return c, fmt.Errorf("container spec %s: argv and scratch are required", path)
	}
	return c, nil
}

// Enter builds the container's root and replaces the calling process with
// its program. The caller must already be in a mount namespace of its own
// (the lab kubelet starts it with CLONE_NEWNS); on success it does not
// return.
func Enter(c Container) error {
	runtime.LockOSThread()
	// The namespace is opened before the mounts can hide /run/netns.
	var target netns.NsHandle = -1
	if c.NetNS != "" {
		ns, err := netns.GetFromPath(c.NetNS)
		if err != nil {
			return fmt.Errorf("opening network namespace %s: %w", c.NetNS, err)
		}
		target = ns
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	root, err := overlayRoot(c.Scratch)
	if err != nil {
		return err
	}
	for _, m := range c.Mounts {
		if err := bind(root, m); err != nil {
			return err
		}
	}
	if target >= 0 {
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("entering network namespace %s: %w", c.NetNS, err)
		}
	}
	if err := unix.Chroot(root); err != nil {
		return fmt.Errorf("entering root %s: %w", root, err)
	}
	dir := c.Dir
	if dir == "" {
		dir = "/"
	}
	if err := os.Chdir(dir); err != nil {
		return fmt.Errorf("working directory %s: %w", dir, err)
	}
	prog, err := lookPath(c.Argv[0], c.Env)
	if err != nil {
		return err
	}
	// The parent-death signal the lab kubelet asked for belongs to this
	// process's first thread; the exec runs on this one, which becomes
	// the process and would carry none: ask again here, so the program
	// dies with the lab kubelet.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("tying the container to the lab kubelet: %w", err)
	}
	if os.Getppid() != c.Parent {
		return errors.New("the lab kubelet is gone")
	}
	return fmt.Errorf("running %s: %w", prog, syscall.Exec(prog, c.Argv, c.Env))
}

// overlayRoot mounts the host's root read through an overlay whose upper
// layer is a tmpfs, then the host's /proc, /sys and /dev into it.
func overlayRoot(scratch string) (string, error) {
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", scratch, err)
	}
	if err := unix.Mount("tmpfs", scratch, "tmpfs", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("mounting a tmpfs on %s: %w", scratch, err)
	}
	upper, work, root := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work"), filepath.Join(scratch, "root")
	for _, d := range []string{upper, work, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", fmt.Errorf("creating %s: %w", d, err)
		}
	}
	opts := "lowerdir=/,upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mounting the container root (%s): %w", opts, err)
	}
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		if err := bind(root, Mount{Source: d, Target: d}); err != nil {
			return "", err
		}
	}
	return root, nil
}

// bind mounts m.Source at m.Target inside root, creating the target (a
// directory, or an empty file for a file).
func bind(root string, m Mount) error {
	st, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("mount source: %w", err)
	}
	// Symlinks in the target resolve inside the root (/var/run is /run
	// there), never to the host's paths.
	target, err := securejoin.SecureJoin(root, m.Target)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", m.Target, err)
	}
	if st.IsDir() {
		err = os.MkdirAll(target, 0o755)
	} else {
		err = touch(target)
	}
	if err != nil {
		return fmt.Errorf("mount point %s: %w", m.Target, err)
	}
	if err := unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding %s at %s: %w", m.Source, m.Target, err)
	}
	if m.ReadOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("making %s read-only: %w", m.Target, err)
		}
	}
	return nil
}

func touch(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// lookPath finds a program as the container's PATH would.
func lookPath(prog string, env []string) (string, error) {
	if strings.Contains(prog, "/") {
		return prog, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, prog)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("executable " + prog + " not found in the container's PATH " + path)
}
