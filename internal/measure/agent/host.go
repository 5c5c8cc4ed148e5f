package agent

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	system "k8s.io/system-validators/validators"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/profile"
)

// Host is what the node checks read: the host's files under Root (the
// host's / mounted into the agent's container), its /proc, and the
// requirements of the profile.
type Host struct {
	Root    string
	Proc    string
	Node    *corev1.Node
	Profile *profile.Profile
	// Address is the node's address; its interface's MTU is the node MTU.
	Address string
	// KernelRelease is uname -r.
	KernelRelease string
	// Nodes are the cluster's nodes (their pod subnets); NodesErr why
	// they could not be read.
	Nodes    []corev1.Node
	NodesErr error
	// NetNS is the path of the node's network namespace; "" is the
	// agent's own (a host-network pod's is the node's).
	NetNS string
}

// NodeChecks returns the node-level checks.
func NodeChecks() []check.Check[*Host] {
	return []check.Check[*Host]{
		check.Func[*Host]{Name: "node.kernel-config", Heading: "Kernel built with the options the network plugin needs", Fn: kernelConfig},
		check.Func[*Host]{Name: "node.kernel-modules", Heading: "Kernel modules loaded, built in or loadable", Fn: kernelModules},
		check.Func[*Host]{Name: "node.resolv-conf", Heading: "resolv.conf names a nameserver other than loopback", Fn: resolvConf},
		check.Func[*Host]{Name: "node.mtu", Heading: "Interface MTUs", Fn: interfaceMTU},
		check.Func[*Host]{Name: "node.resources", Heading: "Free memory, disk and CPUs meet the profile's minimum", Fn: resources},
		check.Func[*Host]{Name: "node.clock", Heading: "The clock is synchronised", Fn: clock},
		check.Func[*Host]{Name: "node.ports", Heading: "The network plugin's ports are free", Fn: freePorts},
		check.Func[*Host]{Name: "node.hugepages", Heading: "Hugepages on DPDK nodes", Fn: hugepages},
		check.Func[*Host]{Name: "node.overlay-routes", Heading: "The overlay device is up and routes every other node's pod subnet", Fn: overlayRoutes},
	}
}

// RunNodeChecks runs every node check on h.
func RunNodeChecks(ctx context.Context, h *Host) []check.Result {
	sev := func(id string) check.Severity { s, _ := h.Profile.Severity(profile.Preflight, id); return s }
	return check.Run(ctx, NodeChecks(), h, sev, 30*time.Second)
}

// KernelRelease returns uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// reporter collects system-validators' per-option verdicts.
type reporter struct{ bad []string }

// Report implements system.Reporter; result 1 is "bad" in the library.
func (r *reporter) Report(key, value string, result system.ValidationResultType) error {
	if result == 1 {
		r.bad = append(r.bad, key+" ("+value+")")
	}
	return nil
}

func kernelConfig(_ context.Context, h *Host) check.Outcome {
	want := h.Profile.Node.KernelConfig
	if len(want) == 0 {
		return check.Skipped("profile %s requires no kernel option", h.Profile.Name)
	}
	spec := system.KernelSpec{Versions: []string{`.*`}}
	for _, name := range want {
		spec.Required = append(spec.Required, system.KernelConfig{Name: name})
	}
	rep := &reporter{}
	v := &system.KernelValidator{Reporter: rep}
	_, errs := v.Validate(system.SysSpec{KernelSpec: spec})
	if len(rep.bad) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("kernel %s lacks %s", h.KernelRelease, strings.Join(rep.bad, ", ")),
			Objects:     []string{"Node/" + h.Node.Name},
			Remediation: "boot a kernel built with these options (or with them as modules) before installing the network plugin"}
	}
	if len(errs) > 0 {
		return check.Errored(errs[0])
	}
	return check.Passed("kernel %s has %s", h.KernelRelease, "CONFIG_"+strings.Join(want, ", CONFIG_"))
}

// kernelOptions reads the running kernel's configuration.
func kernelOptions(h *Host) map[string]string {
	out := map[string]string{}
	var r io.Reader
	if b, err := os.ReadFile(filepath.Join(h.Proc, "config.gz")); err == nil {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return out
		}
		r = zr
	} else if b, err := os.ReadFile(filepath.Join(h.Root, "boot", "config-"+h.KernelRelease)); err == nil {
		r = bytes.NewReader(b)
	} else {
		return out
	}
	return parseKernelConfig(r)
}

func fileHasModule(path, name string, match func(line, name string) bool) bool {
	f, err := os.Open(path) //nolint:gosec // a host file
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if match(sc.Text(), name) {
			return true
		}
	}
	return false
}

// koName matches "kernel/drivers/net/vxlan/vxlan.ko.zst: deps" for vxlan.
func koName(line, name string) bool {
	path, _, _ := strings.Cut(line, ":")
	base := filepath.Base(path)
	return base == name+".ko" || strings.HasPrefix(base, name+".ko.")
}

func kernelModules(_ context.Context, h *Host) check.Outcome {
	mods := h.Profile.Node.Modules
	if len(mods) == 0 {
		return check.Skipped("profile %s requires no kernel module", h.Profile.Name)
	}
	opts := kernelOptions(h)
	modDir := filepath.Join(h.Root, "lib", "modules", h.KernelRelease)
	var have, missing []string
	for _, m := range mods {
		how := ""
		switch {
		case fileHasModule(filepath.Join(h.Proc, "modules"), m.Name, func(l, n string) bool { return strings.HasPrefix(l, n+" ") }):
			how = "loaded"
		case opts[m.Config] == "y" || fileHasModule(filepath.Join(modDir, "modules.builtin"), m.Name, koName):
			how = "built in"
		case fileHasModule(filepath.Join(modDir, "modules.dep"), m.Name, koName):
			how = "loadable"
		}
		if how == "" {
			missing = append(missing, m.Name+" (CONFIG_"+m.Config+")")
		} else {
			have = append(have, m.Name+" "+how)
		}
	}
	if len(missing) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("kernel %s: module(s) %s neither loaded, built in nor in %s", h.KernelRelease, strings.Join(missing, ", "), filepath.Join(modDir, "modules.dep")),
			Objects:     []string{"Node/" + h.Node.Name},
			Remediation: "install the kernel's modules package, or a kernel that has them"}
	}
	return check.Passed("%s", strings.Join(have, ", "))
}

func resolvConf(_ context.Context, h *Host) check.Outcome {
	path := filepath.Join(h.Root, "etc", "resolv.conf")
	b, err := os.ReadFile(path) //nolint:gosec // a host file
	if err != nil {
		return check.Outcome{Status: check.Fail, Message: err.Error(), Objects: []string{"Node/" + h.Node.Name}}
	}
	servers, outside := parseNameservers(b)
	switch {
	case len(servers) == 0:
		return check.Outcome{Status: check.Fail, Message: path + " names no nameserver", Objects: []string{"Node/" + h.Node.Name},
			Remediation: "add a working DNS server's address to " + path}
	case len(outside) == 0:
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("%s names only loopback nameserver(s) %s: pods inheriting it cannot resolve, and the update fails halfway", path, strings.Join(servers, ", ")),
			Objects:     []string{"Node/" + h.Node.Name},
			Remediation: "name the host's IP address or a working DNS server instead of the loopback address (with systemd-resolved, point kubelet's resolvConf at /run/systemd/resolve/resolv.conf)"}
	}
	return check.Passed("nameservers %s", strings.Join(servers, ", "))
}

// nodeMTU returns the MTU of the interface holding addr, or of the
// default route's interface when addr is loopback or not local.
func nodeMTU(h *Host) (name string, mtu int) {
	ifs, _ := net.Interfaces()
	if ip, err := netip.ParseAddr(h.Address); err == nil && !ip.IsLoopback() {
		for _, i := range ifs {
			addrs, _ := i.Addrs()
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == ip {
					return i.Name, i.MTU
				}
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(h.Proc, "net", "route")); err == nil {
		if dev := defaultRouteDevice(b); dev != "" {
			if i, err := net.InterfaceByName(dev); err == nil {
				return i.Name, i.MTU
			}
		}
	}
	return "", 0
}

func interfaceMTU(_ context.Context, h *Host) check.Outcome {
	name, mtu := nodeMTU(h)
	ifs, err := net.Interfaces()
	if err != nil {
		return check.Errored(err)
	}
	var all []string
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			all = append(all, fmt.Sprintf("%s %d", i.Name, i.MTU))
		}
	}
	if mtu == 0 {
		return check.Outcome{Status: check.Warn, Message: "cannot tell which interface carries the node's traffic; up: " + strings.Join(all, ", ")}
	}
	return check.Passed("node interface %s MTU %d (up: %s)", name, mtu, strings.Join(all, ", "))
}

func meminfo(h *Host) map[string]int64 {
	b, err := os.ReadFile(filepath.Join(h.Proc, "meminfo"))
	if err != nil {
		return map[string]int64{}
	}
	return parseMeminfo(b)
}

func resources(_ context.Context, h *Host) check.Outcome {
	req := h.Profile.Node
	mem := meminfo(h)["MemAvailable"] >> 20
	var st unix.Statfs_t
	if err := unix.Statfs(h.Root, &st); err != nil {
		return check.Errored(fmt.Errorf("statfs %s: %w", h.Root, err))
	}
	disk := int64(st.Bavail) * st.Bsize >> 20 //nolint:gosec // block counts fit int64
	cpus := runtime.NumCPU()
	var short []string
	if req.MinMemoryMiB > 0 && mem < req.MinMemoryMiB {
		short = append(short, fmt.Sprintf("memory available %d MiB < %d MiB", mem, req.MinMemoryMiB))
	}
	if req.MinDiskMiB > 0 && disk < req.MinDiskMiB {
		short = append(short, fmt.Sprintf("disk free on %s %d MiB < %d MiB", h.Root, disk, req.MinDiskMiB))
	}
	if req.MinCPU > 0 && cpus < req.MinCPU {
		short = append(short, fmt.Sprintf("CPUs %d < %d", cpus, req.MinCPU))
	}
	if len(short) > 0 {
		return check.Outcome{Status: check.Fail, Message: strings.Join(short, "; "), Objects: []string{"Node/" + h.Node.Name},
			Remediation: fmt.Sprintf("profile %s needs at least %d MiB memory available, %d MiB disk and %d CPUs per node", h.Profile.Name, req.MinMemoryMiB, req.MinDiskMiB, req.MinCPU)}
	}
	return check.Passed("memory available %d MiB, disk free %d MiB, %d CPUs", mem, disk, cpus)
}

func clock(_ context.Context, _ *Host) check.Outcome {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return check.Errored(fmt.Errorf("adjtimex: %w", err))
	}
	if state == unix.TIME_ERROR || tx.Status&unix.STA_UNSYNC != 0 {
		return check.Outcome{Status: check.Warn,
			Message:     fmt.Sprintf("the kernel reports the clock unsynchronised (adjtimex state %d, maximum error %d µs)", state, tx.Maxerror),
			Remediation: "run chrony or systemd-timesyncd against a reachable time source; certificates and leases depend on the clock"}
	}
	return check.Passed("synchronised, estimated error %d µs", tx.Esterror)
}

// boundPorts reads the ports in use from /proc/net: TCP sockets in
// LISTEN, UDP sockets bound.
func boundPorts(proc string) map[string]bool {
	out := map[string]bool{}
	for _, f := range []struct{ file, proto, state string }{
		{"tcp", "tcp", "0A"}, {"tcp6", "tcp", "0A"}, {"udp", "udp", ""}, {"udp6", "udp", ""},
	} {
		b, err := os.ReadFile(filepath.Join(proc, "net", f.file))
		if err != nil {
			continue
		}
		for _, p := range listeningPorts(b, f.state) {
			out[fmt.Sprintf("%d/%s", p, f.proto)] = true
		}
	}
	return out
}

func freePorts(_ context.Context, h *Host) check.Outcome {
	ports := h.Profile.Node.Ports
	if len(ports) == 0 {
		return check.Skipped("profile %s reserves no port", h.Profile.Name)
	}
	bound := boundPorts(h.Proc)
	var busy, free []string
	for _, p := range ports {
		if bound[fmt.Sprintf("%d/%s", p.Number, p.Protocol)] {
			busy = append(busy, p.String())
		} else {
			free = append(free, p.String())
		}
	}
	if len(busy) > 0 {
		slices.Sort(busy)
		return check.Outcome{Status: check.Fail,
			Message:     "in use: " + strings.Join(busy, ", "),
			Objects:     []string{"Node/" + h.Node.Name},
			Remediation: "find the owner (ss -lntup) and stop it, unless it is the network plugin being upgraded"}
	}
	return check.Passed("free: %s", strings.Join(free, ", "))
}

func hugepages(_ context.Context, h *Host) check.Outcome {
	label := h.Profile.Node.HugepagesLabel
	if label == "" {
		return check.Skipped("profile %s needs no hugepages", h.Profile.Name)
	}
	k, v, _ := strings.Cut(label, "=")
	if got, ok := h.Node.Labels[k]; !ok || got != v {
		return check.Skipped("node not labelled %s", label)
	}
	m := meminfo(h)
	if m["HugePages_Total"] == 0 || m["HugePages_Free"] == 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("node labelled %s has %d hugepages, %d free", label, m["HugePages_Total"], m["HugePages_Free"]),
			Objects:     []string{"Node/" + h.Node.Name},
			Remediation: "reserve hugepages (kernel arguments hugepagesz=1G hugepages=N, or vm.nr_hugepages) before the DPDK data plane starts"}
	}
	return check.Passed("%d hugepages, %d free", m["HugePages_Total"], m["HugePages_Free"])
}
