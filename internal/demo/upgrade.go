package demo

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/hitless-dev/hitless/examples"
	"github.com/hitless-dev/hitless/internal/apply"
	"github.com/hitless-dev/hitless/internal/manifest"
	"github.com/hitless-dev/hitless/internal/measure"
	"github.com/hitless-dev/hitless/internal/roll"
)

const (
	dataPlaneNS, dataPlaneDS = "contrail", "contrail-vrouter-nodes"
)

// upgradeDataPlane brings the vRouter DaemonSet to the 1.1.0 template with
// updates on delete, then replaces its pod node by node through the roll
// engine (drain first), with the agents probing for the whole roll, and
// writes the disruption report.
func upgradeDataPlane(ctx context.Context, s *state) (string, error) {
	objs, err := manifest.ReadDir(examples.FS(), examples.PluginV2)
	if err != nil {
		return "", err
	}
	var ds *unstructured.Unstructured
	for _, u := range manifest.Unstructured(objs) {
		if u.GetKind() == "DaemonSet" && u.GetNamespace() == dataPlaneNS && u.GetName() == dataPlaneDS {
			ds = u
		}
	}
	if ds == nil {
		return "", fmt.Errorf("%s has no DaemonSet %s/%s", examples.PluginV2, dataPlaneNS, dataPlaneDS)
	}
	// The data plane must not roll itself: hitless replaces each node's
	// pod after draining the node.
	if err := unstructured.SetNestedMap(ds.Object, map[string]any{"type": "OnDelete"}, "spec", "updateStrategy"); err != nil {
		return "", err
	}
	a, err := apply.New(s.config)
	if err != nil {
		return "", err
	}
	if _, err := a.Apply(ctx, []*unstructured.Unstructured{ds}, apply.Options{Set: "sample-plugin"}); err != nil {
		return "", err
	}
	current, err := s.client.AppsV1().DaemonSets(dataPlaneNS).Get(ctx, dataPlaneDS, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading DaemonSet %s/%s: %w", dataPlaneNS, dataPlaneDS, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for current.Status.ObservedGeneration < current.Generation && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		if current, err = s.client.AppsV1().DaemonSets(dataPlaneNS).Get(ctx, dataPlaneDS, metav1.GetOptions{}); err != nil {
			return "", err
		}
	}
	if current.Status.UpdatedNumberScheduled == current.Status.DesiredNumberScheduled {
		return "the data plane already runs 1.1.0 on every node", nil
	}

	live, err := measure.Start(ctx, s.client, measure.Options{Rate: 100})
	if err != nil {
		return "", err
	}
	time.Sleep(time.Second) // a quiet baseline before the first node
	// Every node runs a vRouter: all of them, the control plane last.
	spec := roll.Spec{RestartDaemonSet: dataPlaneNS + "/" + dataPlaneDS, Batch: "1", Order: "control-plane-last"}
	res, runErr := roll.Run(ctx, s.client, roll.Options{Spec: spec, Command: "hitless demo", Yes: true,
		Progress: func(e roll.Event) {
			if e.Node != "" {
				s.progressf("    %s %-22s %s %s", e.Time.Format("15:04:05.000"), e.Node, e.Phase, e.Message)
			}
		}})
	rep, err := live.Stop(context.WithoutCancel(ctx), 15*time.Second)
	if err != nil {
		return "", err
	}
	if runErr != nil {
		return "", runErr
	}
	measure.Attribute(rep, res.Operation)
	s.report = filepath.Join(s.cluster.Dir, "disruption-report.html")
	if err := measure.WriteHTML(s.report, rep); err != nil {
		return "", err
	}
	var b bytes.Buffer
	tw := printers.GetNewTabWriter(&b)
	measure.PrintTable(tw, rep)
	_ = tw.Flush()
	s.progressf("%s", strings.TrimRight(b.String(), "\n"))
	sm := rep.Summary
	return fmt.Sprintf("%d nodes drained and upgraded one at a time (%s); longest outage %.0f ms (%s), %d loss windows; report %s",
		len(res.Operation.Nodes), res.Operation.ID, sm.LongestOutageMs, sm.WorstPath, len(rep.Windows), s.report), nil
}
