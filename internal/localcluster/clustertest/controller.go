package clustertest

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
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/config"
	"github.com/hitless-dev/hitless/internal/kube/store"
)

// InstallCRDs applies the shipped CustomResourceDefinitions and the
// hitless-system namespace (as the install manifests do) and waits until
// the API server has established every one.
func (e *Env) InstallCRDs(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	if err := store.New(e.Client(t)).EnsureNamespace(ctx); err != nil {
		t.Fatal(err)
	}
	crds, err := config.Objects("crd", "")
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(e.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, crd := range crds {
		if _, err := dyn.Resource(gvr).Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: "hitless-test", Force: true}); err != nil {
			t.Fatalf("applying CRD %s: %v", crd.GetName(), err)
		}
	}
	for _, crd := range crds {
		Eventually(t, 30*time.Second, func() error {
			u, err := dyn.Resource(gvr).Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return err
			}
			var got apiextensionsv1.CustomResourceDefinition
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &got); err != nil {
				return err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
			return errNotEstablished(crd.GetName())
		})
	}
}

type errNotEstablished string

func (e errNotEstablished) Error() string { return "CRD " + string(e) + " is not established" }

// Controller is one `hitless controller run` process.
type Controller struct {
	Cmd  *exec.Cmd
	Out  *bytes.Buffer
	done chan error
}

// StartController runs `hitless controller run` as a process of its own
// (the test binary, handing over to the CLI: its TestMain must call
// app.Main under EnvRunCLI), with a short leader-election lease and no
// health server unless args say otherwise; stopped when the test ends,
// its output logged if the test failed.
func (e *Env) StartController(t testing.TB, args ...string) *Controller {
	t.Helper()
	base := []string{"controller", "run", "--health-probe-bind-address", "0",
		"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"}
	cmd, out, done := e.StartCLI(t, append(base, args...)...)
	p := &Controller{Cmd: cmd, Out: out, done: done}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("controller pid %d output:\n%s", cmd.Process.Pid, out)
		}
	})
	return p
}

// Stop ends the process with SIGTERM, as the kubelet would.
func (p *Controller) Stop() {
	if p.Cmd.ProcessState != nil {
		return
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Kill ends the process with SIGKILL: no cleanup at all.
func (p *Controller) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// FreeAddr returns a loopback address with a port nobody listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// Scrape reads the Prometheus metrics served at addr.
func Scrape(t testing.TB, addr string) map[string]*dto.MetricFamily {
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

// Sample returns the metric of family name whose labels include want, or
// nil.
func Sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
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

// APIClient is a controller-runtime client that knows Kubernetes' types
// and hitless.dev's.
func (e *Env) APIClient(t testing.TB) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(e.Config(t), client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Event is an Event regarding an object, as a test reads it.
type Event struct{ Type, Reason, Note string }

// Events lists the Events (events.k8s.io, in default: where cluster-scoped
// objects' go) regarding the object of kind and name.
func (e *Env) Events(t testing.TB, kind, name string) []Event {
	t.Helper()
	list, err := e.Client(t).EventsV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []Event
	for _, ev := range list.Items {
		if ev.Regarding.Kind == kind && ev.Regarding.Name == name {
			out = append(out, Event{Type: ev.Type, Reason: ev.Reason, Note: ev.Note})
		}
	}
	return out
}

// WaitComponent waits until the Component's status is at phase for its
// current generation, and returns it.
func (e *Env) WaitComponent(t testing.TB, c client.Client, name, phase string, within time.Duration) *v1alpha1.Component {
	t.Helper()
	comp := &v1alpha1.Component{}
	Eventually(t, within, func() error {
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, comp); err != nil {
			return err
		}
		if comp.Status.Phase != phase || comp.Status.ObservedGeneration != comp.Generation {
			return fmt.Errorf("component %s is %q (generation %d observed of %d), want %s; conditions %+v", name, comp.Status.Phase, comp.Status.ObservedGeneration, comp.Generation, phase, comp.Status.Conditions)
		}
		return nil
	})
	return comp
}

func (e Event) String() string { return e.Type + " " + e.Reason + ": " + e.Note }

// HasEvent says whether one of evs, as a string, starts with prefix.
func HasEvent(evs []Event, prefix string) bool {
	for _, e := range evs {
		if strings.HasPrefix(e.String(), prefix) {
			return true
		}
	}
	return false
}
