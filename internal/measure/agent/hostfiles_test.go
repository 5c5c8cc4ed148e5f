package agent

import (
	"bytes"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// seed adds this machine's copy of a host file to a fuzz corpus, when it
// can be read.
func seed(f *testing.F, path string) {
	if b, err := os.ReadFile(path); err == nil {
		f.Add(b)
	}
}

func FuzzMeminfo(f *testing.F) {
	seed(f, "/proc/meminfo")
	f.Add([]byte("MemTotal:       16384 kB\nHugePages_Total:       4\n"))
	f.Add([]byte("MemAvailable: 9223372036854775807 kB\nX: -1 kB\n:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := parseMeminfo(b)
		for k, v := range m {
			if v < 0 {
				t.Fatalf("%s = %d: a negative amount", k, v)
			}
			if !bytes.Contains(b, []byte(k+":")) {
				t.Fatalf("field %q is not in the input", k)
			}
		}
	})
}

func FuzzKernelConfig(f *testing.F) {
	f.Add([]byte("# comment\nCONFIG_VXLAN=m\nCONFIG_GENEVE is not set\nCONFIG_=y\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for k, v := range parseKernelConfig(bytes.NewReader(b)) {
			if k == "" || !bytes.Contains(b, []byte("CONFIG_"+k+"="+v)) {
				t.Fatalf("option %q = %q is not a line of the input", k, v)
			}
		}
	})
}

func FuzzResolvConf(f *testing.F) {
	seed(f, "/etc/resolv.conf")
	f.Add([]byte("nameserver 127.0.0.53\nnameserver 10.0.0.10\nsearch a b\n"))
	f.Add([]byte("nameserver ::1\nnameserver\tfe80::1%eth0\nnameserver\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		servers, outside := parseNameservers(b)
		for _, s := range servers {
			if s == "" || !bytes.Contains(b, []byte(s)) {
				t.Fatalf("nameserver %q is not in the input", s)
			}
		}
		for _, s := range outside {
			ip, err := netip.ParseAddr(s)
			if err != nil || ip.IsLoopback() || !slices.Contains(servers, s) {
				t.Fatalf("%q counted as a nameserver other than loopback (servers %v)", s, servers)
			}
		}
	})
}

func FuzzProcNet(f *testing.F) {
	for _, p := range []string{"/proc/net/route", "/proc/net/tcp", "/proc/net/udp6"} {
		seed(f, p)
	}
	f.Add([]byte("Iface\tDestination\tGateway\neth0\t00000000\t0102A8C0\n"))
	f.Add([]byte("  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A\n   1: x:FFFFF 0:0 0A\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if dev := defaultRouteDevice(b); dev != "" && (strings.ContainsAny(dev, " \t\n") || !bytes.Contains(b, []byte(dev))) {
			t.Fatalf("default route device %q is not a field of the input", dev)
		}
		listen := listeningPorts(b, "0A")
		if all := listeningPorts(b, ""); len(all) < len(listen) {
			t.Fatalf("%d ports in any state, fewer than the %d listening", len(all), len(listen))
		}
	})
}

func FuzzModuleLines(f *testing.F) {
	if b, err := os.ReadFile("/proc/modules"); err == nil {
		f.Add(b, "vxlan")
	}
	f.Add([]byte("kernel/drivers/net/vxlan/vxlan.ko.zst: kernel/net/ipv4/udp_tunnel.ko\nvxlan 118784 0 - Live 0x0\n"), "vxlan")
	f.Fuzz(func(t *testing.T, b []byte, name string) {
		for _, line := range strings.Split(string(b), "\n") {
			if koName(line, name) && !strings.Contains(line, name+".ko") {
				t.Fatalf("line %q taken for module %q", line, name)
			}
		}
	})
}

// FuzzProbeRequest: a probe request ConfigMap of any content (anyone with
// write access to hitless-system can write one) never makes an agent
// probe faster than MaxRate, or with a negative duration or sample.
func FuzzProbeRequest(f *testing.F) {
	f.Add("s1", "100", "0", "30s", "2026-01-01T00:00:00Z")
	f.Add("s1", "2000000000", "-3", "-1h", "yesterday")
	f.Fuzz(func(t *testing.T, id, rate, sample, duration, asked string) {
		cm := &corev1.ConfigMap{Data: map[string]string{"id": id, "rate": rate, "sample": sample, "duration": duration, "asked": asked}}
		req := probeRequestOf(cm)
		if req.Rate < 1 || req.Rate > MaxRate || req.Sample < 0 || req.Duration < 0 {
			t.Fatalf("request %v read as %+v", cm.Data, req)
		}
		_ = requestOf(cm)
	})
}
