package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hitless-dev/hitless/internal/engine/roll"
	knode "github.com/hitless-dev/hitless/internal/kube/node"
)

// Annotations of a reboot request. The node agent (or, on a local
// cluster, KWOK) reboots a node whose request differs from the last it
// handled.
const (
	AnnotationRebootRequest = "hitless.dev/reboot-request"
	AnnotationRebootHandled = "hitless.dev/reboot-handled"
	// AnnotationRebootFrom is the boot ID the node had when asked.
	AnnotationRebootFrom = "hitless.dev/reboot-from-boot-id"
)

// ActionReboot is the per-node reboot action.
const ActionReboot = "reboot"

// RebootAction reboots a node through its agent and waits until the node
// reports a new boot ID and is Ready.
func RebootAction() roll.ActionType {
	return roll.ActionType{Name: ActionReboot, New: func(params json.RawMessage) (roll.Action, error) {
		if len(params) > 0 && string(params) != "null" && string(params) != "{}" {
			return nil, &roll.SpecError{Field: "actions.reboot", Msg: "takes no parameters"}
		}
		return reboot{}, nil
	}}
}

type reboot struct{}

// Run asks once per operation and node (the request is the same on a
// rerun, so a crash never reboots a node twice), then waits.
func (reboot) Run(ctx context.Context, t roll.Target) error {
	n, err := t.Client.CoreV1().Nodes().Get(ctx, t.Node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading node %s: %w", t.Node, err)
	}
	token := rebootToken(t.Operation, t.Node)
	if n.Annotations[AnnotationRebootRequest] != token {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
			AnnotationRebootRequest: token, AnnotationRebootFrom: n.Status.NodeInfo.BootID}}})
		if _, err := t.Client.CoreV1().Nodes().Patch(ctx, t.Node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("asking node %s to reboot: %w", t.Node, err)
		}
		if t.Progress != nil {
			t.Progress("reboot requested (boot ID " + n.Status.NodeInfo.BootID + ")")
		}
	}
	from := n.Annotations[AnnotationRebootFrom]
	if from == "" {
		from = n.Status.NodeInfo.BootID
	}
	for {
		n, err = t.Client.CoreV1().Nodes().Get(ctx, t.Node, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading node %s: %w", t.Node, err)
		}
		if n.Annotations[AnnotationRebootFrom] != "" {
			from = n.Annotations[AnnotationRebootFrom]
		}
		if rebooted(n, from) {
			if t.Progress != nil {
				t.Progress("rebooted (boot ID " + n.Status.NodeInfo.BootID + ")")
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for node %s to reboot: %w", t.Node, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func rebooted(n *corev1.Node, from string) bool {
	return n.Status.NodeInfo.BootID != "" && n.Status.NodeInfo.BootID != from && knode.Ready(n)
}

// rebootToken is the request of one operation for one node, shaped as a
// boot ID.
func rebootToken(op, node string) string {
	h := sha256.Sum256([]byte(op + "/" + node))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
