package probe

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envPeers makes the test binary a crowd of peers instead of running
// tests: it probes the agent at the address in the variable and answers
// the agent's probes, in a process of its own so that the benchmark
// measures the agent alone.
const envPeers = "HITLESS_PROBE_PEERS"

func TestMain(m *testing.M) {
	if addr := os.Getenv(envPeers); addr != "" {
		os.Exit(runPeers(addr))
	}
	os.Exit(m.Run())
}

// runPeers starts n peers (n and the agent's address in the variable as
// N@ADDR), prints their addresses, and runs until stdin closes.
func runPeers(spec string) int {
	n, addr, _ := strings.Cut(spec, "@")
	count, _ := strconv.Atoi(n)
	target, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 1
	}
	var addrs []string
	for i := range count {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 1
		}
		ep := Serve(c)
		Start(context.Background(), ep, Options{ID: "bench", From: fmt.Sprint("peer", i), Rate: 100}, []Target{{Node: "agent", UDP: target}})
		addrs = append(addrs, c.LocalAddr().String())
	}
	fmt.Println(strings.Join(addrs, ","))
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// cpuTime returns the process's user and system CPU time.
func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkAgentFiftyPeers measures one agent's probing with 50 peers at
// 100 probes per second each, both ways: it sends 5,000 probes a second,
// answers 5,000, and judges them. The peers run in another process. Each
// iteration is 10 s of probing; the metrics are the agent's CPU (percent
// of one core) and resident memory.
//
//	go test -run '^$' -bench AgentFiftyPeers -benchtime 2x ./internal/measure/probe
func BenchmarkAgentFiftyPeers(b *testing.B) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ep := Serve(c)
	cmd := exec.Command(os.Args[0], "-test.run=^$") //nolint:gosec // this test binary
	cmd.Env = append(os.Environ(), envPeers+"=50@"+c.LocalAddr().String())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	var targets []Target
	for i, a := range strings.Split(strings.TrimSpace(line), ",") {
		u, _ := net.ResolveUDPAddr("udp", a)
		targets = append(targets, Target{Node: fmt.Sprint("peer", i), UDP: u})
	}
	var user, sys, wall time.Duration
	var lost, sent int64
	for b.Loop() {
		s := Start(context.Background(), ep, Options{ID: "agent", From: "agent", Rate: 100}, targets)
		time.Sleep(time.Second) // warm up
		u0, s0 := cpuTime()
		t0 := time.Now()
		time.Sleep(10 * time.Second)
		u1, s1 := cpuTime()
		user, sys = user+u1-u0, sys+s1-s0
		wall += time.Since(t0)
		s.Stop()
		for _, p := range s.Paths() {
			lost += p.Lost
			sent += p.Sent
		}
	}
	runtime.GC()
	b.ReportMetric(100*(user+sys).Seconds()/wall.Seconds(), "cpu-%-of-core")
	b.ReportMetric(100*user.Seconds()/wall.Seconds(), "user-%")
	b.ReportMetric(100*sys.Seconds()/wall.Seconds(), "kernel-%")
	b.ReportMetric(rssMiB(), "rss-MiB")
	b.ReportMetric(float64(sent)/wall.Seconds()*10/11, "probes-sent/s")
	b.ReportMetric(float64(lost), "lost")
}

// BenchmarkSmallestOutage injects link-downs of decreasing length into one
// lab node while probing at the default rate, 10 times each, and reports
// the share of them seen as a loss window on the node's paths.
//
//	go test -run '^$' -bench SmallestOutage -benchtime 1x ./internal/measure/probe
func BenchmarkSmallestOutage(b *testing.B) {
	for _, d := range []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 50 * time.Millisecond} {
		b.Run("outage="+d.String(), func(b *testing.B) {
			for b.Loop() {
				detected, measured := outageTrials(b, d, 10)
				b.ReportMetric(float64(detected)*10, "detected-%")
				b.ReportMetric(measured, "mean-measured-ms")
			}
		})
	}
}

func outageTrials(b *testing.B, d time.Duration, trials int) (detected int, meanMs float64) {
	b.Helper()
	l := newLab(b, "outage", 3)
	var peers []*peer
	for _, n := range l.Nodes {
		peers = append(peers, startPeer(b, n))
	}
	sessions := probeAll(peers, 100)
	var sum float64
	for range trials {
		before := windowsOn(sessions, "n2")
		time.Sleep(300 * time.Millisecond)
		if err := l.SetLink("n2", false); err != nil {
			b.Fatal(err)
		}
		time.Sleep(d)
		if err := l.SetLink("n2", true); err != nil {
			b.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		after := windowsOn(sessions, "n2")
		if len(after) > len(before) {
			detected++
			sum += after[len(after)-1]
		}
	}
	stopAll(sessions)
	if detected > 0 {
		meanMs = sum / float64(detected)
	}
	return detected, meanMs
}

// windowsOn returns the durations of the loss windows on n1 -> node.
func windowsOn(sessions []*Session, node string) []float64 {
	var out []float64
	for _, p := range sessions[0].Paths() {
		if p.To == node {
			for _, w := range p.Windows {
				if !w.Open {
					out = append(out, w.DurationMs)
				}
			}
		}
	}
	return out
}
