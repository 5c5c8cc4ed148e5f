package controller_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 1})

func TestMain(m *testing.M) {
	if os.Getenv(clustertest.EnvRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

// pool adds n nodes for one test with a protected workload on them (web:
// 2 pods a node, PDB maxUnavailable 1, grace period grace seconds) and the
// guard that fails the test if a roll breaks the PDB or takes more than
// batch nodes at once.
func pool(t *testing.T, n, batch int, grace int64) (sel map[string]string, nodes []string) {
	t.Helper()
	id := fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano()%10000)
	if len(id) > 60 {
		id = id[len(id)-60:]
	}
	id = strings.Trim(id, "-")
	sel = map[string]string{"controller-test": id}
	nodes = env.AddNodes(t, n, sel)
	ns := env.Namespace(t)
	env.Deployment(t, ns, "web", int32(2*n), clustertest.Workload{GracePeriod: grace, NodeSelector: sel})
	env.PDB(t, ns, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, ns, "web", time.Minute)
	clustertest.StartGuard(t, env.Client(t), ns, nodes, batch)
	return sel, nodes
}

func nodeRoll(name string, sel map[string]string) *v1alpha1.NodeRoll {
	return &v1alpha1.NodeRoll{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.NodeRollSpec{
			NodeSelector: &metav1.LabelSelector{MatchLabels: sel},
			Batch:        intstr.FromInt32(1),
		},
	}
}

// waitPhase waits until the NodeRoll's status says phase and returns it.
func waitPhase(t testing.TB, c client.Client, name, phase string, within time.Duration) *v1alpha1.NodeRoll {
	t.Helper()
	nr := &v1alpha1.NodeRoll{}
	clustertest.Eventually(t, within, func() error {
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, nr); err != nil {
			return err
		}
		if nr.Status.Phase != phase {
			return fmt.Errorf("NodeRoll %s is %q, want %s; conditions %+v", name, nr.Status.Phase, phase, nr.Status.Conditions)
		}
		return nil
	})
	return nr
}

func conditionTrue(nr *v1alpha1.NodeRoll, typ string) *metav1.Condition {
	c := meta.FindStatusCondition(nr.Status.Conditions, typ)
	if c == nil || c.Status != metav1.ConditionTrue {
		return nil
	}
	return c
}

// events returns the reasons and notes of the Events regarding the
// NodeRoll.
func events(t testing.TB, name string) []string {
	t.Helper()
	var out []string
	for _, e := range env.Events(t, "NodeRoll", name) {
		out = append(out, e.Reason+": "+e.Note)
	}
	return out
}

func cordoned(t testing.TB, names []string) []string {
	t.Helper()
	var out []string
	for _, n := range names {
		node, err := env.Client(t).CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if node.Spec.Unschedulable {
			out = append(out, n)
		}
	}
	return out
}

func gone(c client.Client, name string) error {
	err := c.Get(context.Background(), client.ObjectKey{Name: name}, &v1alpha1.NodeRoll{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("NodeRoll %s still exists", name)
}

// warnings lists the Warning Events regarding the NodeRoll.
func warnings(t testing.TB, name string) []string {
	t.Helper()
	var out []string
	for _, e := range env.Events(t, "NodeRoll", name) {
		if e.Type == corev1.EventTypeWarning {
			out = append(out, e.Reason+": "+e.Note)
		}
	}
	return out
}
