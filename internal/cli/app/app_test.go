package app

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/binaries"
)

func run(t *testing.T, argv0 string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), argv0, args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

// TestBadInputStartsNothing: bad input exits 2 with a message naming the
// flag and value, before any binary is resolved or state written.
func TestBadInputStartsNothing(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"negative node count", []string{"cluster", "up", "--nodes", "-1"}, exitcode.Usage, `--nodes: -1 is out of range`},
		{"node count not a number", []string{"cluster", "up", "--nodes", "many"}, exitcode.Usage, `invalid argument "many" for "--nodes"`},
		{"zero control planes", []string{"cluster", "up", "--control-plane-nodes", "0"}, exitcode.Usage, `--control-plane-nodes: 0 is out of range`},
		{"name not DNS-1123", []string{"cluster", "up", "--name", "My_Cluster"}, exitcode.Usage, `"My_Cluster" is not a valid cluster name`},
		{"name too long", []string{"cluster", "up", "--name", strings.Repeat("a", 41)}, exitcode.Usage, `longer than 40 characters`},
		{"bad node label", []string{"cluster", "up", "--node-labels", "pool"}, exitcode.Usage, `--node-labels: "pool" is not key=value`},
		{"invalid node label key", []string{"cluster", "up", "--node-labels", "bad key=x"}, exitcode.Usage, `--node-labels: key "bad key"`},
		{"unknown cluster kubeconfig", []string{"cluster", "kubeconfig", "--name", "nosuch"}, exitcode.Usage, `cluster "nosuch": no such local cluster`},
		{"unknown cluster down", []string{"cluster", "down", "--name", "nosuch"}, exitcode.Usage, `cluster "nosuch": no such local cluster`},
		{"down of a bad name", []string{"cluster", "down", "--name", "UPPER"}, exitcode.Usage, `"UPPER" is not a valid cluster name`},
		{"unknown command", []string{"frobnicate"}, exitcode.Usage, `unknown command "frobnicate"`},
		{"unknown cluster subcommand", []string{"cluster", "frob"}, exitcode.Usage, `unknown command "frob"`},
		{"unknown flag", []string{"version", "--bogus"}, exitcode.Usage, `unknown flag: --bogus`},
		{"bad output format", []string{"version", "-o", "xml"}, exitcode.Usage, `unknown output format "xml"`},
		{"extra argument", []string{"cluster", "up", "extra"}, exitcode.Usage, `unknown command "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			t.Setenv(localcluster.EnvHome, home)
			// Any attempt to resolve binaries would fail loudly here.
			t.Setenv(binaries.EnvBinDir, filepath.Join(home, "no-binaries"))
			code, _, stderr := run(t, "hitless", tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr does not say %q:\n%s", tt.wantErr, stderr)
			}
			entries, err := os.ReadDir(home)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("bad input changed state: %s holds %v", home, entries)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, stderr := run(t, "hitless", "version", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Version      string            `json:"version"`
		LocalCluster map[string]string `json:"localCluster"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("version -o json is not JSON: %v\n%s", err, out)
	}
	if got.Version == "" || got.LocalCluster["kubernetes"] != binaries.KubernetesVersion {
		t.Errorf("version = %+v", got)
	}
}

func TestKubectlPluginName(t *testing.T) {
	code, out, _ := run(t, "kubectl-hitless", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, "kubectl hitless [command]") {
		t.Errorf("help as a kubectl plugin should show `kubectl hitless`:\n%s", out)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		t.Run(shell, func(t *testing.T) {
			code, out, stderr := run(t, "hitless", "completion", shell)
			if code != 0 || len(out) < 100 {
				t.Fatalf("completion %s: exit %d, %d bytes; %s", shell, code, len(out), stderr)
			}
			if !strings.Contains(out, "hitless") {
				t.Errorf("completion script does not mention hitless")
			}
		})
	}
}

func TestConnectionFlags(t *testing.T) {
	code, out, _ := run(t, "hitless", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, f := range []string{"--kubeconfig", "--context", "--namespace", "--server", "--as"} {
		if !strings.Contains(out, f) {
			t.Errorf("--help lacks the kubectl connection flag %s", f)
		}
	}
}
