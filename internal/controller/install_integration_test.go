package controller_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/config"
	"github.com/hitless-dev/hitless/internal/component/apply"
	"github.com/hitless-dev/hitless/internal/controller"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

const controllerUser = "system:serviceaccount:hitless-system:hitless-controller"

// installController applies `hitless controller manifest` (the kustomize
// base, rendered) with staged server-side apply and waits until every
// object is ready: the controller's Deployment Available (KWOK runs its
// pods as fakes; the test starts the real process).
func installController(t *testing.T) {
	t.Helper()
	objs, err := config.Objects("default", "registry.test/hitless:v0.0.0-test")
	if err != nil {
		t.Fatal(err)
	}
	a, err := apply.New(env.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := a.Apply(ctx, objs, apply.Options{Set: "hitless-controller", Wait: 2 * time.Minute}); err != nil {
		t.Fatalf("installing the controller: %v", err)
	}
	t.Cleanup(func() { removeWorkloads(t) })
}

// removeWorkloads deletes the installed controller's Deployment and the
// agent's DaemonSet: the other tests' rolls would drain their fake pods.
func removeWorkloads(t testing.TB) {
	cs := env.Client(t)
	ctx := context.Background()
	_ = cs.AppsV1().Deployments(lock.Namespace).Delete(ctx, "hitless-controller", metav1.DeleteOptions{})
	_ = cs.AppsV1().DaemonSets(lock.Namespace).Delete(ctx, "hitless-agent", metav1.DeleteOptions{})
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as the
// controller's ServiceAccount with a token from the TokenRequest API, as
// the kubelet would mount it in the controller's pod.
func serviceAccountKubeconfig(t *testing.T) (string, *rest.Config) {
	t.Helper()
	cs := env.Client(t)
	tok, err := cs.CoreV1().ServiceAccounts(lock.Namespace).CreateToken(context.Background(), "hitless-controller",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for the controller's ServiceAccount: %v", err)
	}
	admin := env.Config(t)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthority: admin.CAFile, CertificateAuthorityData: admin.CAData}
	kc.AuthInfos["controller"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["controller"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "controller"}
	kc.CurrentContext = "controller"
	path := filepath.Join(t.TempDir(), "controller.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

// auditEntry is the part of an audit.k8s.io/v1 Event the tests read.
type auditEntry struct {
	Stage string `json:"stage"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	Verb      string `json:"verb"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	RequestURI     string `json:"requestURI"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Timestamp time.Time `json:"stageTimestamp"`
}

// audited returns the requests user made since, from the API server's
// audit log, and those it refused.
func audited(t *testing.T, user string, since time.Time) (all, forbidden []string) {
	t.Helper()
	f, err := os.Open(env.Cluster(t).AuditLog)
	if err != nil {
		t.Fatalf("the local cluster's audit log: %v", err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e auditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit log line %q: %v", sc.Text(), err)
		}
		if e.User.Username != user || e.Stage != "ResponseComplete" || e.Timestamp.Before(since) {
			continue
		}
		what := e.Verb + " " + e.RequestURI
		all = append(all, what)
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			forbidden = append(forbidden, what)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return all, forbidden
}

// The controller installed from its manifests runs under its own
// ServiceAccount with exactly the shipped RBAC: a NodeRoll of 10 nodes
// under the PDB guard succeeds without one request the API server
// forbids, and the same identity cannot read a Secret or delete a node.
func TestInstalledControllerUnderItsOwnRBAC(t *testing.T) {
	installController(t)
	sel, nodes := pool(t, 10, 1, 1)
	kubeconfig, saConfig := serviceAccountKubeconfig(t)
	start := time.Now()
	env.StartController(t, "--kubeconfig", kubeconfig)

	c := env.APIClient(t)
	ctx := context.Background()
	nr := nodeRoll("under-its-own-rbac", sel)
	// A Job hook per node: the Jobs in hitless-hooks are within the RBAC.
	nr.Spec.Hooks = &v1alpha1.NodeHooks{PreNode: []v1alpha1.NodeHook{{Job: &v1alpha1.JobHook{Template: jobTemplate("")}}}}
	t.Cleanup(func() {
		background := metav1.DeletePropagationBackground
		_ = env.Client(t).BatchV1().Jobs(controller.DefaultHookNamespace).DeleteCollection(context.Background(), metav1.DeleteOptions{PropagationPolicy: &background}, metav1.ListOptions{LabelSelector: "test=hooks"})
	})
	if err := c.Create(ctx, nr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), nr) })
	nr = waitPhase(t, c, nr.Name, v1alpha1.PhaseSucceeded, 5*time.Minute)
	if nr.Status.Summary.Done != 10 {
		t.Errorf("summary %+v, want 10 done", nr.Status.Summary)
	}
	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("nodes left cordoned: %v", got)
	}

	all, forbidden := audited(t, controllerUser, start)
	if len(all) < 10 {
		t.Fatalf("the audit log shows %d requests by %s; the controller did not run as its ServiceAccount", len(all), controllerUser)
	}
	if len(forbidden) > 0 {
		t.Errorf("the shipped RBAC is not enough: %d of %d requests forbidden:\n%s", len(forbidden), len(all), strings.Join(forbidden, "\n"))
	}
	t.Logf("%d requests by %s during the install and the roll of 10 nodes, none forbidden", len(all), controllerUser)

	// Least privilege where it matters.
	sa, err := kubernetes.NewForConfig(saConfig)
	if err != nil {
		t.Fatal(err)
	}
	dryRun := metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"read a Secret in kube-system", func() error {
			_, err := sa.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"read a Secret in its own namespace", func() error {
			_, err := sa.CoreV1().Secrets(lock.Namespace).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"delete a node", func() error { return sa.CoreV1().Nodes().Delete(ctx, nodes[0], dryRun) }},
		{"create a pod", func() error {
			_, err := sa.CoreV1().Pods(metav1.NamespaceDefault).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"write a ConfigMap outside hitless-system", func() error {
			_, err := sa.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"create a Job outside hitless-hooks", func() error {
			_, err := sa.BatchV1().Jobs(lock.Namespace).Create(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "x", Image: "x"}}}}}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"change its own RBAC", func() error {
			return sa.RbacV1().ClusterRoles().Delete(ctx, "hitless-controller", dryRun)
		}},
		{"delete a namespace", func() error { return sa.CoreV1().Namespaces().Delete(ctx, lock.Namespace, dryRun) }},
	} {
		t.Run("cannot "+tc.name, func(t *testing.T) {
			if err := tc.do(); !apierrors.IsForbidden(err) {
				t.Errorf("%s as %s: %v; want Forbidden", tc.name, controllerUser, err)
			}
		})
	}
	if t.Failed() {
		fmt.Println(strings.Join(all, "\n"))
	}
}

// The Helm chart installs on the local cluster, by hitless's own install
// (the Helm SDK renders it with the cluster's capabilities): every object
// ready, the controller's Deployment Available with its two replicas
// (KWOK runs them as fakes).
func TestChartInstalledByHitless(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	if err := store.New(cs).EnsureNamespace(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeWorkloads(t) })
	cmd, out, done := env.StartCLI(t, "install", "-f", "../../charts/hitless", "--name", "hitless-chart", "-n", lock.Namespace,
		"--set", "image.repository=registry.test/hitless", "--set", "image.tag=v0.0.0-test")
	if err := clustertest.WaitCLI(t, cmd, out, done, 5*time.Minute); err != nil {
		t.Fatalf("hitless install of the chart: %v\n%s", err, out)
	}
	d, err := cs.AppsV1().Deployments(lock.Namespace).Get(ctx, "hitless-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.AvailableReplicas != 2 || d.Spec.Template.Spec.Containers[0].Image != "registry.test/hitless:v0.0.0-test" {
		t.Errorf("Deployment: %d available, image %s", d.Status.AvailableReplicas, d.Spec.Template.Spec.Containers[0].Image)
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, "hitless-controller", metav1.GetOptions{}); err != nil {
		t.Errorf("the chart's ClusterRole: %v", err)
	}
	ds, err := cs.AppsV1().DaemonSets(lock.Namespace).Get(ctx, "hitless-agent", metav1.GetOptions{})
	if err != nil || ds.Status.NumberReady != ds.Status.DesiredNumberScheduled || ds.Status.DesiredNumberScheduled == 0 {
		t.Errorf("the agent's DaemonSet: %v, %+v", err, ds.Status)
	}
	if !strings.Contains(out.String(), "HELM CHART hitless 0.1.0") {
		t.Errorf("the install does not report the chart:\n%s", out)
	}
}
