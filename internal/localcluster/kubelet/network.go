package kubelet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/libcni"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// netnsName names a pod's network namespace.
func netnsName(cluster, uid string) string {
	if len(uid) > 13 {
		uid = uid[:13]
	}
	return lab.PodNamespacePrefix(cluster) + uid
}

func removeNetNS(name string) {
	if _, err := os.Stat(filepath.Join(lab.NetNSDir, name)); err == nil {
		_ = netns.DeleteNamed(name)
	}
}

// cniConfig is the node's active network configuration, chosen as the
// container runtime chooses it: the first file of /etc/cni/net.d in
// lexical order.
func (w *worker) cniConfig() (*libcni.NetworkConfigList, error) {
	dir := filepath.Join(w.k.nodeRoot(w.node.Name), "etc/cni/net.d")
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, fmt.Errorf("reading the node's CNI configuration: %w", err)
	}
	if len(files) == 0 {
		return nil, errors.New("no CNI configuration in /etc/cni/net.d of node " + w.node.Name)
	}
	f := files[0]
	if strings.HasSuffix(f, ".conflist") {
		return libcni.ConfListFromFile(f)
	}
	// A single plugin's .conf: container runtimes still load them.
	c, err := libcni.ConfFromFile(f) //nolint:staticcheck // see above
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromConf(c) //nolint:staticcheck // see above
}

func (w *worker) runtimeConf(path string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: string(w.pod.UID), NetNS: path, IfName: "eth0", Args: [][2]string{
		{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", w.pod.Namespace}, {"K8S_POD_NAME", w.pod.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", string(w.pod.UID)}, {"K8S_POD_UID", string(w.pod.UID)},
	}}
}

func (w *worker) cni() *libcni.CNIConfig {
	root := w.k.nodeRoot(w.node.Name)
	return libcni.NewCNIConfigWithCacheDir([]string{"/opt/cni/bin"}, filepath.Join(root, "var/lib/cni/cache"),
		&nodeExec{w: w, root: root})
}

// wire gives the pod a network namespace and runs the CNI ADD of the
// node's configuration on it, as a kubelet's runtime does.
func (w *worker) wire(ctx context.Context) (string, string, error) {
	list, err := w.cniConfig()
	if err != nil {
		return "", "", err
	}
	name := netnsName(w.k.cfg.Lab.Cluster, string(w.pod.UID))
	path := filepath.Join(lab.NetNSDir, name)
	if _, err := os.Stat(path); err != nil {
		ns, err := lab.NewNamespace(name)
		if err != nil {
			return "", "", err
		}
		err = loUp(ns)
		_ = ns.Close()
		if err != nil {
			removeNetNS(name)
			return "", "", err
		}
	}
	res, err := w.cni().AddNetworkList(ctx, list, w.runtimeConf(path))
	if err != nil {
		// As a runtime tears a failed sandbox down: the next try starts
		// from a fresh namespace, not from half an ADD.
		_ = w.cni().DelNetworkList(ctx, list, w.runtimeConf(path))
		removeNetNS(name)
		return "", "", fmt.Errorf("CNI ADD (%s): %w", list.Name, err)
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return "", "", fmt.Errorf("CNI result of %s: %w", list.Name, err)
	}
	if len(r.IPs) == 0 {
		return "", "", fmt.Errorf("CNI ADD (%s) gave the pod no address", list.Name)
	}
	return r.IPs[0].Address.IP.String(), path, nil
}

// unwire runs the CNI DEL and removes the pod's namespace.
func (w *worker) unwire(ctx context.Context) error {
	name := netnsName(w.k.cfg.Lab.Cluster, string(w.pod.UID))
	defer removeNetNS(name)
	list, err := w.cniConfig()
	if err != nil {
		return nil // no configuration: nothing was wired by it
	}
	path := filepath.Join(lab.NetNSDir, name)
	if err := w.cni().DelNetworkList(ctx, list, w.runtimeConf(path)); err != nil {
		return fmt.Errorf("CNI DEL (%s): %w", list.Name, err)
	}
	return nil
}

func loUp(ns netns.NsHandle) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	return h.LinkSetUp(lo)
}

// nodeExec runs CNI plugins as the node would: from its /opt/cni/bin, in
// its network namespace, with its /run, /var/lib/cni and CNI directories.
type nodeExec struct {
	w    *worker
	root string
}

func (e *nodeExec) FindInPath(plugin string, paths []string) (string, error) {
	for _, p := range paths {
		in := filepath.Join(p, plugin)
		if st, err := os.Stat(filepath.Join(e.root, in)); err == nil && st.Mode().IsRegular() {
			return in, nil
		}
	}
	return "", fmt.Errorf("CNI plugin %q not found in %v of node %s", plugin, paths, e.w.node.Name)
}

func (e *nodeExec) Decode(b []byte) (version.PluginInfo, error) {
	var d version.PluginDecoder
	return d.Decode(b)
}

func (e *nodeExec) ExecPlugin(ctx context.Context, plugin string, stdin []byte, environ []string) ([]byte, error) {
	c := Container{NetNS: e.w.node.Path(), Scratch: filepath.Join(e.w.dir, "cni"), Argv: []string{plugin}, Env: environ, Parent: os.Getpid()}
	for _, d := range nodeDirs() {
		c.Mounts = append(c.Mounts, Mount{Source: filepath.Join(e.root, d), Target: d})
	}
	c.Mounts = append(c.Mounts, Mount{Source: lab.NetNSDir, Target: lab.NetNSDir})
	spec := filepath.Join(e.w.dir, "cni.json")
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(spec, b, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, e.w.k.cfg.Self, "cluster", "enter", spec)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var perr cnitypes.Error
		if json.Unmarshal(stdout.Bytes(), &perr) == nil && perr.Msg != "" {
			return nil, &perr
		}
		return nil, fmt.Errorf("CNI plugin %s: %w: %s", plugin, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
