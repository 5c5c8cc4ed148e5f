package agent

import (
	"bufio"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// The parsers of the host's files: each takes the file's bytes as the
// kernel or the resolver writes them, and skips what it cannot read
// rather than failing the check on a line it does not know.

// parseKernelConfig reads a kernel configuration (CONFIG_X=y lines) into
// option name (without CONFIG_) to value.
func parseKernelConfig(r io.Reader) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") && len(k) > len("CONFIG_") {
			out[strings.TrimPrefix(k, "CONFIG_")] = v
		}
	}
	return out
}

// parseMeminfo reads /proc/meminfo into field to bytes ("kB" values are
// scaled; HugePages_* counts are not). Values that are negative or would
// overflow are left out.
func parseMeminfo(b []byte) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			if n > math.MaxInt64/1024 {
				continue
			}
			n *= 1024
		}
		out[k] = n
	}
	return out
}

// parseNameservers returns the nameservers resolv.conf names, and those
// of them that are addresses other than loopback.
func parseNameservers(b []byte) (servers, outside []string) {
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		servers = append(servers, f[1])
		if ip, err := netip.ParseAddr(f[1]); err == nil && !ip.IsLoopback() {
			outside = append(outside, f[1])
		}
	}
	return servers, outside
}

// defaultRouteDevice returns the interface of the IPv4 default route in
// /proc/net/route, or "".
func defaultRouteDevice(b []byte) string {
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "00000000" {
			return f[0]
		}
	}
	return ""
}

// listeningPorts returns the local ports of /proc/net/{tcp,udp}[6] sockets
// in state (hex, "0A" for LISTEN; "" for any).
func listeningPorts(b []byte, state string) []uint16 {
	var out []uint16
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[1:] {
		fields := strings.Fields(line)
		if len(fields) < 4 || (state != "" && fields[3] != state) {
			continue
		}
		_, hexPort, _ := strings.Cut(fields[1], ":")
		if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
			out = append(out, uint16(p))
		}
	}
	return out
}
