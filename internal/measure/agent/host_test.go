package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/profile"
)

func host(t *testing.T, prof string) *Host {
	t.Helper()
	p, err := profile.Get(prof)
	if err != nil {
		t.Fatal(err)
	}
	return &Host{Root: "/", Proc: "/proc", Profile: p, Address: "127.0.0.1", KernelRelease: KernelRelease(),
		Node: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1", Labels: map[string]string{}}}}
}

func kernelHas(t *testing.T, option string) bool {
	t.Helper()
	h := host(t, "generic")
	v := kernelOptions(h)[option]
	return v == "y" || v == "m"
}

// The machine's real kernel: it has CONFIG_VXLAN and lacks CONFIG_GENEVE
// and CONFIG_OPENVSWITCH (LOCAL-CLUSTER-FACTS). A profile needing only
// VXLAN passes; the OVN-Kubernetes one fails naming what is missing.
func TestKernelAgainstThisMachine(t *testing.T) {
	if !kernelHas(t, "VXLAN") || kernelHas(t, "GENEVE") || kernelHas(t, "OPENVSWITCH") {
		t.Fatalf("this test expects a kernel with CONFIG_VXLAN and without CONFIG_GENEVE and CONFIG_OPENVSWITCH (kernel %s)", KernelRelease())
	}
	tests := []struct {
		profile string
		fn      func(context.Context, *Host) check.Outcome
		status  check.Status
		names   []string
	}{
		{"generic", kernelConfig, check.Pass, []string{"CONFIG_VXLAN"}},
		{"tungsten-issu", kernelConfig, check.Pass, []string{"CONFIG_VXLAN"}},
		{"openshift-ovn-migration", kernelConfig, check.Fail, []string{"CONFIG_GENEVE", "CONFIG_OPENVSWITCH"}},
		{"generic", kernelModules, check.Pass, []string{"vxlan built in"}},
		{"openshift-ovn-migration", kernelModules, check.Fail, []string{"geneve (CONFIG_GENEVE)", "openvswitch (CONFIG_OPENVSWITCH)"}},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			out := tt.fn(context.Background(), host(t, tt.profile))
			if out.Status != tt.status {
				t.Fatalf("status %s (%s), want %s", out.Status, out.Message, tt.status)
			}
			for _, n := range tt.names {
				if !strings.Contains(out.Message, n) {
					t.Fatalf("message %q does not name %s", out.Message, n)
				}
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestResolvConf(t *testing.T) {
	tests := []struct {
		name, content string
		status        check.Status
		msg           string
	}{
		{"loopback only", "# written by hand\nnameserver 127.0.0.1\nsearch example.com\n", check.Fail, "only loopback nameserver(s) 127.0.0.1"},
		{"systemd stub", "nameserver 127.0.0.53\noptions edns0\n", check.Fail, "only loopback"},
		{"ipv6 loopback", "nameserver ::1\n", check.Fail, "only loopback"},
		{"none", "search example.com\n", check.Fail, "names no nameserver"},
		{"real server", "nameserver 127.0.0.1\nnameserver 10.0.0.10\n", check.Pass, "127.0.0.1, 10.0.0.10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := host(t, "fujitsu-update")
			h.Root = t.TempDir()
			writeFile(t, filepath.Join(h.Root, "etc", "resolv.conf"), tt.content)
			out := resolvConf(context.Background(), h)
			if out.Status != tt.status || !strings.Contains(out.Message, tt.msg) {
				t.Fatalf("got %s %q, want %s containing %q", out.Status, out.Message, tt.status, tt.msg)
			}
			if tt.status == check.Fail && (len(out.Objects) != 1 || out.Objects[0] != "Node/w1" || out.Remediation == "") {
				t.Fatalf("failure without the node or a remediation: %+v", out)
			}
		})
	}
}

// Ports held by a real socket on this machine are reported in use.
func TestPortsInUse(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = udp.Close() }()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tcp.Close() }()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := free.Addr().(*net.TCPAddr).Port
	_ = free.Close()

	h := host(t, "generic")
	h.Profile.Node.Ports = []profile.Port{
		{Number: udp.LocalAddr().(*net.UDPAddr).Port, Protocol: "udp", Use: "test-udp"},
		{Number: tcp.Addr().(*net.TCPAddr).Port, Protocol: "tcp", Use: "test-tcp"},
		{Number: freePort, Protocol: "tcp", Use: "free"},
	}
	out := freePorts(context.Background(), h)
	if out.Status != check.Fail || !strings.Contains(out.Message, "(test-udp)") || !strings.Contains(out.Message, "(test-tcp)") || strings.Contains(out.Message, "(free)") {
		t.Fatalf("got %s %q, want the UDP and TCP test ports in use and not the free one", out.Status, out.Message)
	}
	h.Profile.Node.Ports = h.Profile.Node.Ports[2:]
	if out := freePorts(context.Background(), h); out.Status != check.Pass {
		t.Fatalf("free port reported %s %q", out.Status, out.Message)
	}
}

func TestResourcesAndHugepages(t *testing.T) {
	h := host(t, "generic")
	if out := resources(context.Background(), h); out.Status != check.Pass {
		t.Fatalf("this machine fails the generic minimum: %s", out.Message)
	}
	h.Profile.Node.MinMemoryMiB = 1 << 40
	h.Profile.Node.MinCPU = 4096
	out := resources(context.Background(), h)
	if out.Status != check.Fail || !strings.Contains(out.Message, "memory available") || !strings.Contains(out.Message, "CPUs") {
		t.Fatalf("got %s %q, want memory and CPU shortfalls", out.Status, out.Message)
	}

	h = host(t, "cn2")
	if out := hugepages(context.Background(), h); out.Status != check.Skip {
		t.Fatalf("unlabelled node: %s %q, want skip", out.Status, out.Message)
	}
	h.Node.Labels["agent-mode"] = "dpdk"
	h.Proc = t.TempDir()
	for _, tt := range []struct {
		total, free int
		status      check.Status
	}{{0, 0, check.Fail}, {16, 0, check.Fail}, {16, 8, check.Pass}} {
		writeFile(t, filepath.Join(h.Proc, "meminfo"), fmt.Sprintf("MemTotal: 1000 kB\nHugePages_Total: %d\nHugePages_Free: %d\n", tt.total, tt.free))
		if out := hugepages(context.Background(), h); out.Status != tt.status {
			t.Fatalf("hugepages %d/%d: %s %q, want %s", tt.free, tt.total, out.Status, out.Message, tt.status)
		}
	}
}

func TestNodeMTU(t *testing.T) {
	h := host(t, "generic")
	name, mtu := nodeMTU(h)
	if name == "" {
		t.Skip("this machine has no default route")
	}
	i, err := net.InterfaceByName(name)
	if err != nil || i.MTU != mtu || i.Flags&net.FlagLoopback != 0 {
		t.Fatalf("node interface %s MTU %d: want the default route's non-loopback interface (%v, %v)", name, mtu, i, err)
	}
}
