package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// Annotations of a reboot request (hitless's reboot action writes the
// first two).
const (
	annRebootRequest = "hitless.dev/reboot-request"
	annRebootFrom    = "hitless.dev/reboot-from-boot-id"
	annRebootHandled = "hitless.dev/reboot-handled"
	annRebootError   = "hitless.dev/reboot-error"
)

// Rebooter reboots the host.
type Rebooter interface {
	Reboot(ctx context.Context) error
}

// CommandRebooter reboots by running a command: by default the host's
// systemd through PID 1's namespaces, as kured does.
type CommandRebooter struct {
	Command []string
}

// DefaultRebootCommand is what CommandRebooter runs without a command.
func DefaultRebootCommand() []string {
	return []string{"nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--", "systemctl", "reboot"}
}

// Reboot runs the command.
func (r CommandRebooter) Reboot(ctx context.Context) error {
	c := r.Command
	if len(c) == 0 {
		c = DefaultRebootCommand()
	}
	out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput() //nolint:gosec // the operator configures the command
	if err != nil {
		return fmt.Errorf("running %v: %w: %s", c, err, out)
	}
	return nil
}

// pendingReboot tells whether the node was asked to reboot and has not
// since: its boot ID is still the one the request was made at. A reboot
// changes the boot ID, which ends the request; a crash before the reboot
// leaves it pending, so the agent that starts next reboots.
func pendingReboot(n *corev1.Node) bool {
	req, from := n.Annotations[annRebootRequest], n.Annotations[annRebootFrom]
	return req != "" && from != "" && n.Status.NodeInfo.BootID == from
}

// honourReboots reboots the host when its node has a pending request,
// checking every poll until ctx ends.
func honourReboots(ctx context.Context, cs kubernetes.Interface, node string, r Rebooter, poll time.Duration) {
	log := klog.FromContext(ctx).WithValues("node", node)
	asked := ""
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		switch {
		case err != nil:
			log.V(1).Info("reading the node for reboot requests", "err", err)
		case pendingReboot(n) && n.Annotations[annRebootRequest] != asked:
			req := n.Annotations[annRebootRequest]
			asked = req
			log.Info("rebooting the host", "request", req, "bootID", n.Status.NodeInfo.BootID)
			rerr := r.Reboot(ctx)
			ann := map[string]any{annRebootHandled: req, annRebootError: nil}
			if rerr != nil {
				log.Error(rerr, "rebooting the host")
				ann[annRebootError] = rerr.Error()
			}
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
			if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				log.Error(err, "recording the reboot request as handled")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(poll):
		}
	}
}
