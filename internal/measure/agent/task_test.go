package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hitless-dev/hitless/internal/measure/probe"
)

func TestTaskValidate(t *testing.T) {
	tests := []struct {
		name string
		task Task
		want string
	}{
		{"ok", Task{ID: "a", RemoveCNIConfigs: []string{"10-flannel.conflist", "05-x.conf"}, RemoveLinks: []string{"flannel.1", "cni0"}, Verify: []string{"10.244.1.5:9473"}}, ""},
		{"no id", Task{}, "needs an id"},
		{"a path", Task{ID: "a", RemoveCNIConfigs: []string{"../kubelet.conf"}}, "removeCNIConfigs"},
		{"not CNI", Task{ID: "a", RemoveCNIConfigs: []string{"passwd"}}, "removeCNIConfigs"},
		{"loopback", Task{ID: "a", RemoveLinks: []string{"lo"}}, "removeLinks"},
		{"too long", Task{ID: "a", RemoveLinks: []string{"averyveryverylongname"}}, "removeLinks"},
		{"no port", Task{ID: "a", Verify: []string{"10.0.0.1"}}, "verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.task.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// A task removes the old data plane's configuration from the host's
// /etc/cni/net.d (only with --allow-cleanup), reports the configuration
// now active, and verifies peers with real probes: an agent's endpoint
// answers, a closed port does not.
func TestTaskDo(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "etc/cni/net.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"10-flannel.conflist", "10-kuberouter.conflist", "README"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := ActiveCNIConfig(root); got != "10-flannel.conflist" {
		t.Fatalf("active configuration %q, want 10-flannel.conflist", got)
	}
	live, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = live.Close() }()
	probe.Serve(live)
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.LocalAddr().String()
	_ = closed.Close()

	task := Task{ID: "t1", RemoveCNIConfigs: []string{"10-flannel.conflist", "99-gone.conf"}}
	refused := (&Agent{opts: Options{Root: root}}).do(context.Background(), task)
	if !strings.Contains(refused.Error, "--allow-cleanup") {
		t.Errorf("without --allow-cleanup: %+v", refused)
	}
	if _, err := os.Stat(filepath.Join(dir, "10-flannel.conflist")); err != nil {
		t.Errorf("a refused task removed the file: %v", err)
	}

	a := &Agent{opts: Options{Root: root, AllowCleanup: true}}
	task.Verify = []string{live.LocalAddr().String(), dead}
	res := a.do(context.Background(), task)
	if res.Error != "" {
		t.Fatal(res.Error)
	}
	if !slices.Equal(res.Removed, []string{"/etc/cni/net.d/10-flannel.conflist"}) {
		t.Errorf("removed %v", res.Removed)
	}
	if res.CNIConfig != "10-kuberouter.conflist" {
		t.Errorf("active configuration afterwards %q", res.CNIConfig)
	}
	if !slices.Equal(res.Reached, []string{live.LocalAddr().String()}) || !slices.Equal(res.Unreached, []string{dead}) {
		t.Errorf("reached %v, unreached %v", res.Reached, res.Unreached)
	}
	if s := res.Summary(); !strings.Contains(s, "reached 1 of 2 peers") || !strings.Contains(s, "10-kuberouter.conflist") {
		t.Errorf("summary %q", s)
	}
}
