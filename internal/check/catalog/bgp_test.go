package catalog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/snapshot"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

// daemonSets reads the DaemonSets of a multi-document manifest.
func daemonSets(t *testing.T, text string) []appsv1.DaemonSet {
	t.Helper()
	var out []appsv1.DaemonSet
	for _, doc := range strings.Split(text, "\n---") {
		var d appsv1.DaemonSet
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatal(err)
		}
		if d.Kind == "DaemonSet" {
			out = append(out, d)
		}
	}
	return out
}

// The BGP graceful-restart check reads the real kube-router releases'
// DaemonSets: with the release's --bgp-graceful-restart=true it passes;
// with it false or left out, it fails (a warning in the profiles) naming
// the DaemonSet and the measured consequence; a data plane without BGP
// (flannel, or kube-router with its router off) is not its business.
func TestBGPGracefulRestart(t *testing.T) {
	dir, err := upstream.Find()
	if err != nil {
		t.Fatal(err)
	}
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	release := read(filepath.Join(dir, "cni", "kube-router", "kubeadm-kuberouter-v2.1.0.yaml"))
	for _, tc := range []struct {
		name     string
		manifest string
		want     check.Status
		msg      string
	}{
		{"the v2.1.0 release", release, check.Pass, "1 kube-router BGP speaker(s), all with graceful restart"},
		{"the v1.6.0 release", read(filepath.Join(dir, "cni", "kube-router", "kubeadm-kuberouter-v1.6.0.yaml")), check.Pass, "graceful restart"},
		{"graceful restart false", strings.Replace(release, "--bgp-graceful-restart=true", "--bgp-graceful-restart=false", 1), check.Fail, "DaemonSet kube-system/kube-router container kube-router"},
		{"graceful restart left out", strings.Replace(release, "- --bgp-graceful-restart=true", "", 1), check.Fail, "6.5 to 9.5 s"},
		{"router off", strings.Replace(release, "--run-router=true", "--run-router=false", 1), check.Skip, "no BGP data plane"},
		{"flannel", read("../../../examples/flannel-lab/kube-flannel.yaml"), check.Skip, "no BGP data plane"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &Input{Snap: &snapshot.Snapshot{DaemonSets: daemonSets(t, tc.manifest)}}
			o := bgpGracefulRestart(context.Background(), in)
			if o.Status != tc.want || !strings.Contains(o.Message, tc.msg) {
				t.Fatalf("%s %q, want %s containing %q", o.Status, o.Message, tc.want, tc.msg)
			}
			if o.Status == check.Fail && (len(o.Objects) != 1 || o.Objects[0] != "DaemonSet/kube-system/kube-router" || o.Remediation == "") {
				t.Fatalf("objects %v, remediation %q", o.Objects, o.Remediation)
			}
		})
	}
}
