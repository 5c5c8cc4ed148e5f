package safety_test

import (
	"cmp"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 3, QuickTermination: true})

// envRunCLI makes the test binary act as the hitless CLI, so that tests
// can run it as a process of its own.
const envRunCLI = "HITLESS_TEST_RUN_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(envRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

const (
	pluginV1 = "../../../examples/sample-plugin/v1"
	pluginV2 = "../../../examples/sample-plugin/v2"
)

// nothing leaves nothing out of a snapshot.
func nothing(schema.GroupResource, *unstructured.Unstructured) bool { return false }

// TestBadInputOnEveryCommand: every mutating command, given bad input in
// a file or a flag, exits 2 with a message naming the file, object and
// field or the flag, and leaves every object of the cluster as it was.
func TestBadInputOnEveryCommand(t *testing.T) {
	lifecycletest.MustHitless(t, env, "install", "-f", pluginV1, "--name", "sample", "--wait", "2m")
	// A finished operation for resume and abort to refuse.
	ops, err := journal.NewStore(env.Client(t)).List(t.Context())
	if err != nil || len(ops) == 0 {
		t.Fatalf("journals after the install: %d (%v)", len(ops), err)
	}
	done := ops[0].ID

	dir := t.TempDir()
	file := func(name, content string) string { return lifecycletest.WriteFile(t, name, content) }
	noName := file("noname.yaml", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  namespace: kube-system\nspec: {}\n")
	notYAML := file("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [\n")
	badPlan := file("plan.yaml", "apiVersion: hitless.dev/v1alpha1\nkind: MigrationPlan\nmetadata: {name: p}\nsteps:\n- name: one\n  roll: {batch: \"0\"}\n")
	badParams := file("params.yaml", "clusterNetwork:\n- cidr: 10.128.0.0/33\n  hostPrefix: 23\n")
	badMatrix := file("matrix.yaml", "releases:\n- controller: \"\"\n")

	// Refusals by the component's state (exit 1, as helm's) are not bad
	// input, but must name the component and change nothing either.
	const refused = exitcode.Failed
	tests := []struct {
		name string
		args []string
		want []string // each must appear in stderr
		code int      // 0 for exitcode.Usage
	}{
		// roll
		{"roll: batch zero", []string{"roll", "--batch", "0"}, []string{"--batch", `"0"`}, 0},
		{"roll: batch over 100%", []string{"roll", "--batch", "150%"}, []string{"--batch", "150%"}, 0},
		{"roll: bad selector", []string{"roll", "--selector", "pool in (a"}, []string{"--selector"}, 0},
		{"roll: unknown order", []string{"roll", "--order", "random"}, []string{"--order", "random"}, 0},
		{"roll: unknown drain-timeout handling", []string{"roll", "--on-drain-timeout", "retry"}, []string{"--on-drain-timeout", "retry"}, 0},
		{"roll: negative drain timeout", []string{"roll", "--drain-timeout", "-1s"}, []string{"--drain-timeout"}, 0},
		{"roll: negative max failures", []string{"roll", "--max-failures", "-1"}, []string{"--max-failures"}, 0},
		{"roll: node label not key=value", []string{"roll", "--set-node-label", "upgraded"}, []string{"--set-node-label", "upgraded"}, 0},
		{"roll: unknown action", []string{"roll", "--action", "teleport"}, []string{"--action", "teleport"}, 0},
		{"roll: no such node", []string{"roll", "--nodes", "no-such-node"}, []string{"no-such-node"}, 0},
		{"roll: confirm and pre-node", []string{"roll", "--confirm", "--pre-node", "true"}, []string{"--confirm", "--pre-node"}, 0},
		{"roll: canary not a number", []string{"roll", "--canary", "some"}, []string{"--canary"}, 0},
		{"roll: probe rate too high", []string{"roll", "--probe", "--probe-rate", "100000"}, []string{"--probe-rate", "100000"}, 0},
		// install
		{"install: no such file", []string{"install", "-f", dir + "/nothere", "--name", "x"}, []string{dir + "/nothere"}, 0},
		{"install: object without a name", []string{"install", "-f", noName, "--name", "x"}, []string{noName, "DaemonSet", "metadata.name"}, 0},
		{"install: not YAML", []string{"install", "-f", notYAML, "--name", "x"}, []string{notYAML}, 0},
		{"install: bad component name", []string{"install", "-f", pluginV1, "--name", "Not_A_Label"}, []string{"--name", "Not_A_Label"}, 0},
		{"install: bad batch", []string{"install", "-f", pluginV1, "--name", "x", "--batch", "-2"}, []string{"--batch", "-2"}, 0},
		{"install: data plane not ns/name", []string{"install", "-f", pluginV1, "--name", "x", "--data-plane", "vrouter"}, []string{"--data-plane", "vrouter"}, 0},
		{"install: bad node selector", []string{"install", "-f", pluginV1, "--name", "x", "--node-selector", "a in ("}, []string{"--node-selector"}, 0},
		{"install: unknown profile", []string{"install", "-f", pluginV1, "--name", "x", "--profile", "nosuch"}, []string{"--profile", "nosuch"}, 0},
		{"install: on-budget unknown", []string{"install", "-f", pluginV1, "--name", "x", "--on-budget", "ignore"}, []string{"--on-budget", "ignore"}, 0},
		{"install: budget without probe", []string{"install", "-f", pluginV1, "--name", "x", "--max-outage", "2s"}, []string{"--max-outage", "--probe"}, 0},
		{"install: values for manifests", []string{"install", "-f", pluginV1, "--name", "x", "--set", "a=b"}, []string{"not a Helm chart"}, 0},
		{"install: already installed", []string{"install", "-f", pluginV1, "--name", "sample"}, []string{"sample", "upgrade"}, refused},
		{"install --in-cluster: a directory of directories", []string{"install", "--in-cluster", "-f", pluginV1 + "/..", "--name", "x"}, []string{"holds the directory", "--in-cluster"}, 0},
		{"install --in-cluster: bad name", []string{"install", "--in-cluster", "-f", pluginV1, "--name", "Not_A_Label"}, []string{"--name", "Not_A_Label"}, 0},
		{"install --in-cluster: rollback without probe", []string{"install", "--in-cluster", "-f", pluginV1, "--name", "x", "--rollback-on-breach"}, []string{"--rollback-on-breach", "--probe"}, 0},
		{"install: rollback-on-breach without in-cluster", []string{"install", "-f", pluginV1, "--name", "x", "--rollback-on-breach"}, []string{"--rollback-on-breach", "--in-cluster"}, 0},
		{"install --in-cluster: report", []string{"install", "--in-cluster", "-f", pluginV1, "--name", "x", "--probe", "--report", dir + "/r.html"}, []string{"--report"}, 0},
		{"upgrade --in-cluster: from", []string{"upgrade", "--in-cluster", "-f", pluginV2, "--name", "sample", "--from", pluginV1}, []string{"--from", "--in-cluster"}, 0},
		{"upgrade --in-cluster: set", []string{"upgrade", "--in-cluster", "-f", pluginV2, "--name", "sample", "--set", "a=b"}, []string{"--set", "--in-cluster"}, 0},
		// upgrade
		{"upgrade: unknown component", []string{"upgrade", "-f", pluginV2, "--name", "nosuch"}, []string{"nosuch", "install"}, refused},
		{"upgrade: prefer unknown", []string{"upgrade", "-f", pluginV2, "--name", "sample", "--prefer", "me"}, []string{"--prefer", "me"}, 0},
		{"upgrade: object without a name", []string{"upgrade", "-f", noName, "--name", "sample"}, []string{noName, "metadata.name"}, 0},
		{"upgrade: from not there", []string{"upgrade", "-f", pluginV2, "--name", "sample", "--from", dir + "/old"}, []string{dir + "/old"}, 0},
		{"upgrade: probe sample negative", []string{"upgrade", "-f", pluginV2, "--name", "sample", "--probe", "--probe-sample", "-1"}, []string{"--probe-sample"}, 0},
		{"upgrade: wait negative", []string{"upgrade", "-f", pluginV2, "--name", "sample", "--wait", "-1m"}, []string{"--wait"}, 0},
		// diff
		{"diff: not YAML", []string{"diff", "-f", notYAML, "--name", "sample"}, []string{notYAML}, 0},
		// rollback
		{"rollback: no such revision", []string{"rollback", "--name", "sample", "--revision", "9"}, []string{"--revision", "9"}, 0},
		{"rollback: nothing to go back to", []string{"rollback", "--name", "sample"}, []string{"sample"}, refused},
		{"rollback: unknown component", []string{"rollback", "--name", "nosuch"}, []string{"nosuch"}, refused},
		{"rollback: negative revision", []string{"rollback", "--name", "sample", "--revision", "-1"}, []string{"--revision"}, 0},
		// uninstall
		{"uninstall: unknown component", []string{"uninstall", "--name", "nosuch"}, []string{"nosuch"}, refused},
		{"uninstall: no name", []string{"uninstall"}, []string{"--name"}, 0},
		{"uninstall: negative finalizer timeout", []string{"uninstall", "--name", "sample", "--finalizer-timeout", "-1s"}, []string{"--finalizer-timeout"}, 0},
		// resume and abort
		{"resume: no such operation", []string{"resume", "roll-nosuch"}, []string{"roll-nosuch"}, 0},
		{"resume: a finished operation", []string{"resume", done}, []string{done}, 0},
		{"resume: no id", []string{"resume"}, []string{"accepts 1 arg"}, 0},
		{"abort: no such operation", []string{"abort", "roll-nosuch"}, []string{"roll-nosuch"}, 0},
		{"abort: a finished operation", []string{"abort", done}, []string{done}, 0},
		// migrate
		{"migrate: unknown plan", []string{"migrate", "run", "nosuch-plan"}, []string{"nosuch-plan"}, 0},
		{"migrate: bad plan file", []string{"migrate", "run", "-f", badPlan}, []string{badPlan, "batch"}, 0},
		{"migrate: parameter not name=value", []string{"migrate", "run", "openshift-sdn-to-ovn", "--set", "mtu"}, []string{"--set", "mtu"}, 0},
		{"migrate: parameter out of range", []string{"migrate", "run", "openshift-sdn-to-ovn", "--set", "mtu=10"}, []string{"mtu"}, 0},
		{"migrate: unknown parameter", []string{"migrate", "run", "openshift-sdn-to-ovn", "--set", "colour=blue"}, []string{"colour"}, 0},
		// checks (they record their runs: a refused run records nothing)
		{"preflight: bad params file", []string{"preflight", "-f", badParams}, []string{badParams, "10.128.0.0/33"}, 0},
		{"preflight: bad matrix", []string{"preflight", "--matrix", badMatrix}, []string{badMatrix}, 0},
		{"preflight: unknown profile", []string{"preflight", "--profile", "nosuch"}, []string{"--profile", "nosuch"}, 0},
		{"postflight: negative check timeout", []string{"postflight", "--check-timeout", "-1s"}, []string{"--check-timeout"}, 0},
		{"postflight: bad selector", []string{"postflight", "-l", "a in ("}, []string{"--selector"}, 0},
		// probe and the lab
		{"probe: rate too high", []string{"probe", "run", "--rate", "5000"}, []string{"--rate", "5000"}, 0},
		{"probe: negative duration", []string{"probe", "run", "--duration", "-5s"}, []string{"--duration"}, 0},
		{"cluster fault: unknown fault", []string{"cluster", "fault", "--node", "n1", "meteor"}, []string{"meteor"}, 0},
		{"cluster fault: loss over 100%", []string{"cluster", "fault", "--node", "n1", "loss", "150%"}, []string{"150%"}, 0},
		{"cluster fault: no node", []string{"cluster", "fault", "link-down", "2s"}, []string{"--node"}, 0},
		// output
		{"unknown output format", []string{"uninstall", "--name", "sample", "-o", "xml"}, []string{"xml"}, 0},
	}
	before := clustertest.Snapshot(t, env.Config(t), nothing)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := cmp.Or(tc.code, exitcode.Usage)
			code, out, stderr := lifecycletest.Hitless(t, env, tc.args...)
			if code != want {
				t.Errorf("hitless %s: exit %d, want %d\n%s\n%s", strings.Join(tc.args, " "), code, want, out, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("hitless %s: the error does not name %q:\n%s", strings.Join(tc.args, " "), w, stderr)
				}
			}
			if diff := before.Diff(clustertest.Snapshot(t, env.Config(t), nothing)); len(diff) > 0 {
				t.Fatalf("hitless %s changed the cluster:\n%s", strings.Join(tc.args, " "), strings.Join(diff, "\n"))
			}
		})
	}
}
