package controller_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/config"
	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/controller"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 1})

func TestMain(m *testing.M) {
	if os.Getenv(clustertest.EnvRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

// installCRDs applies the shipped CustomResourceDefinitions and the
// hitless-system namespace (as the install manifests do) and waits until
// the API server serves them.
func installCRDs(t testing.TB) {
	t.Helper()
	if err := store.New(env.Client(t)).EnsureNamespace(context.Background()); err != nil {
		t.Fatal(err)
	}
	crds, err := config.Objects("crd", "")
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	ctx := context.Background()
	for _, crd := range crds {
		if _, err := dyn.Resource(gvr).Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: "hitless-test", Force: true}); err != nil {
			t.Fatalf("applying CRD %s: %v", crd.GetName(), err)
		}
	}
	c := kubeClient(t)
	clustertest.Eventually(t, 30*time.Second, func() error {
		return c.List(ctx, &v1alpha1.NodeRollList{})
	})
}

func kubeClient(t testing.TB) client.Client {
	t.Helper()
	scheme, err := controller.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config(t), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// controllerProcess is one `hitless controller run` process.
type controllerProcess struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
}

// startController runs `hitless controller run` as a process of its own
// (the test binary, handing over to the CLI), stopped when the test ends;
// its output is logged if the test fails.
func startController(t testing.TB, args ...string) *controllerProcess {
	t.Helper()
	base := []string{"controller", "run", "--health-probe-bind-address", "0",
		"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"}
	cmd, out, done := env.StartCLI(t, append(base, args...)...)
	p := &controllerProcess{cmd: cmd, out: out, done: done}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("controller pid %d output:\n%s", cmd.Process.Pid, out)
		}
	})
	return p
}

// stop ends the process with SIGTERM, as the kubelet would.
func (p *controllerProcess) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// scrape reads the metrics a controller serves at addr.
func scrape(t testing.TB, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// sample returns the metric of family name whose labels include want, or
// nil.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	for _, m := range f.Metric {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return m
		}
	}
	return nil
}

// kill ends the process with SIGKILL: no cleanup at all.
func (p *controllerProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
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
	list, err := env.Client(t).EventsV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "NodeRoll" && e.Regarding.Name == name {
			out = append(out, e.Reason+": "+e.Note)
		}
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
	list, err := env.Client(t).EventsV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == "NodeRoll" && e.Regarding.Name == name && e.Type == corev1.EventTypeWarning {
			out = append(out, e.Reason+": "+e.Note)
		}
	}
	return out
}
