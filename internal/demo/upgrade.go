package demo

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/examples"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/measure"
)

const (
	plugin                   = "contrail"
	dataPlaneNS, settingsMap = "contrail", "contrail-settings"
)

// pluginSource writes an embedded release of the plugin into the
// cluster's directory, where the user can run hitless on it too.
func pluginSource(s *state, dir string) (string, error) {
	return writeExample(s.cluster.Dir, dir)
}

// writeExample writes the embedded example dir into clusterDir.
func writeExample(clusterDir, dir string) (string, error) {
	dst := filepath.Join(clusterDir, dir)
	err := fs.WalkDir(examples.FS(), dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(examples.FS(), path)
		if err != nil {
			return err
		}
		out := filepath.Join(clusterDir, path)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o600)
	})
	if err != nil {
		return "", fmt.Errorf("writing the example %s to %s: %w", dir, dst, err)
	}
	return dst, nil
}

func (s *state) lifecycle() lifecycle.Cluster {
	return lifecycle.Cluster{Client: s.client, Config: s.config}
}

// installPlugin installs the plugin at 1.0.0 as revision 1 of component
// contrail, unless an earlier demo run installed it: the demo never
// downgrades.
func installPlugin(ctx context.Context, s *state) (string, error) {
	revs, err := release.NewStore(s.client).List(ctx, plugin)
	if err != nil {
		return "", err
	}
	if cur := release.Current(revs); cur != nil {
		return fmt.Sprintf("revision %d already deployed by an earlier run: left as is", cur.Number), nil
	}
	src, err := pluginSource(s, examples.PluginV1)
	if err != nil {
		return "", err
	}
	loaded, err := component.Load(src)
	if err != nil {
		return "", err
	}
	res, err := lifecycle.Install(ctx, s.lifecycle(), lifecycle.Options{Name: plugin, Source: loaded, Command: "hitless demo", Wait: 3 * time.Minute})
	if err != nil {
		return "", err
	}
	counts := map[string]int{}
	for _, e := range res.Applied {
		counts[e.Action]++
	}
	return fmt.Sprintf("revision 1 of %s: %d objects applied (%s), all ready; manifests in %s", plugin, len(res.Applied), summarize(counts), src), nil
}

// upgradePlugin customizes the plugin live the way an operator does
// (kubectl edit of its MTU), then upgrades it to 1.1.0: the customization
// is carried into the new release, the controllers roll, and the vRouter
// DaemonSet's pods are replaced node by node through the roll engine
// (drain first) with the agents probing the whole time; the disruption
// report ties every loss window to its node and step.
func upgradePlugin(ctx context.Context, s *state) (string, error) {
	revs, err := release.NewStore(s.client).List(ctx, plugin)
	if err != nil {
		return "", err
	}
	if cur := release.Current(revs); cur != nil && cur.Number > 1 {
		return fmt.Sprintf("revision %d already deployed by an earlier run: left as is", cur.Number), nil
	}
	if _, err := s.client.CoreV1().ConfigMaps(dataPlaneNS).Patch(ctx, settingsMap, types.MergePatchType,
		[]byte(`{"data":{"VROUTER_MTU":"1400"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		return "", fmt.Errorf("customizing ConfigMap %s/%s: %w", dataPlaneNS, settingsMap, err)
	}
	s.progressf("    customized live, as with kubectl edit: ConfigMap %s/%s VROUTER_MTU 1500 -> 1400", dataPlaneNS, settingsMap)
	src, err := pluginSource(s, examples.PluginV2)
	if err != nil {
		return "", err
	}
	loaded, err := component.Load(src)
	if err != nil {
		return "", err
	}
	res, rep, nodes, err := s.measuredUpgrade(ctx, s.client, s.lifecycle(), plugin, loaded)
	if err != nil {
		return "", err
	}
	s.report = filepath.Join(s.cluster.Dir, "disruption-report.html")
	if err := s.writeReport(s.report, rep); err != nil {
		return "", err
	}
	carried := make([]string, 0, len(res.Carried))
	for _, c := range res.Carried {
		carried = append(carried, c.String())
	}
	sm := rep.Summary
	return fmt.Sprintf("revision %d: carried %s; %d nodes drained and upgraded one at a time; longest outage %.0f ms (%s), %d loss windows; report %s",
		res.Revision, strings.Join(carried, "; "), nodes, sm.LongestOutageMs, sm.WorstPath, len(rep.Windows), s.report), nil
}

// measuredUpgrade upgrades component name to src, one node at a time, as
// `hitless upgrade --probe` does: one probe session for the whole
// operation, its data-plane rolls gated by it, and every loss window tied
// to the node and step it belongs to. It returns how many nodes the
// data-plane rolls took.
func (s *state) measuredUpgrade(ctx context.Context, cs kubernetes.Interface, lc lifecycle.Cluster, name string, src *component.Source) (*lifecycle.Result, *measure.Report, int, error) {
	session := measure.NewSession(cs, &measure.GuardSpec{Rate: 100})
	if err := session.Start(ctx); err != nil {
		return nil, nil, 0, err
	}
	opts := lifecycle.Options{Name: name, Source: src, Command: "hitless demo", Batch: "1", Wait: 3 * time.Minute}
	time.Sleep(time.Second) // a quiet baseline before the first node
	opts.Guard, opts.Guards = session.Guard(), session.Guards()
	opts.Progress = func(line string) { s.progressf("    %s %s", time.Now().Format("15:04:05.000"), line) }
	opts.RollProgress = func(e roll.Event) {
		if e.Node != "" {
			s.progressf("    %s   %-22s %s %s", e.Time.Format("15:04:05.000"), e.Node, e.Phase, e.Message)
		}
	}
	res, runErr := lifecycle.Upgrade(ctx, lc, opts)
	id, steps := "", []measure.Steps(nil)
	if res != nil {
		id, steps = res.Operation, []measure.Steps{res}
	}
	rep, err := session.Finish(ctx, id, steps...)
	if err != nil {
		return nil, nil, 0, err
	}
	if runErr != nil {
		return nil, nil, 0, runErr
	}
	nodes := 0
	for _, op := range res.RollJournals {
		nodes += len(op.Record.Nodes)
	}
	return res, rep, nodes, nil
}

// writeReport writes the HTML report to path and prints the table.
func (s *state) writeReport(path string, rep *measure.Report) error {
	if err := measure.WriteHTML(path, rep); err != nil {
		return err
	}
	var b bytes.Buffer
	tw := printers.GetNewTabWriter(&b)
	measure.PrintTable(tw, rep)
	_ = tw.Flush()
	s.progressf("%s", strings.TrimRight(b.String(), "\n"))
	return nil
}
