package safety_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/kube/store"
)

// The values of the test's Secret: the vendor's in each release, the
// user's live edit, and a key no release changes.
const (
	vendorOne = "vendor-one-Zq8xw"
	vendorTwo = "vendor-two-Zq8xw"
	userLive  = "user-live-Zq8xw"
	unchanged = "shared-key-Zq8xw"
)

func release(version, token, level string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: vault-cni}
---
apiVersion: v1
kind: Secret
metadata: {name: api-token, namespace: vault-cni}
stringData: {token: %s, shared: %s}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: vault-cni}
data: {LOG_LEVEL: %s}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: vault-cni
  annotations: {hitless.dev/data-plane: "true"}
spec:
  selector: {matchLabels: {app: vault-agent}}
  updateStrategy: {type: OnDelete}
  template:
    metadata: {labels: {app: vault-agent}}
    spec:
      tolerations: [{operator: Exists}]
      terminationGracePeriodSeconds: 1
      containers:
      - name: agent
        image: registry.example.com/vault-cni/agent:%s
        env:
        - name: TOKEN
          valueFrom: {secretKeyRef: {name: api-token, key: token}}
`, token, unchanged, level, version)
}

// cli runs the hitless CLI as its own process (this test binary, see
// TestMain), so that its logs, which klog writes to the process's stderr,
// are captured too.
func cli(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--kubeconfig", env.Kubeconfig(t)}, args...)...) //nolint:gosec // the test binary
	cmd.Env = append(os.Environ(), envRunCLI+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, out.String()
}

// TestSecretsNeverShown: a Secret whose value the vendor changes between
// releases and the user edits live goes through diff, a conflict, an
// upgrade with backups, history, status, a rollback and an uninstall.
// No output (table, JSON, YAML, conflict messages, logs at -v=6), no
// ConfigMap or Event in the cluster shows any of its values, plain or
// base64; the values are kept only in Secrets and 0600 backup files.
func TestSecretsNeverShown(t *testing.T) {
	ctx := context.Background()
	cs := env.Client(t)
	v1 := lifecycletest.WriteFile(t, "v1.yaml", release("1.0.0", vendorOne, "info"))
	v2 := lifecycletest.WriteFile(t, "v2.yaml", release("1.1.0", vendorTwo, "debug"))
	backups := t.TempDir()
	var outputs []string
	run := func(want int, args ...string) string {
		t.Helper()
		code, out, stderr := lifecycletest.Hitless(t, env, args...)
		if code != want {
			t.Fatalf("hitless %s: exit %d, want %d\n%s\n%s", strings.Join(args, " "), code, want, out, stderr)
		}
		outputs = append(outputs, "hitless "+strings.Join(args, " ")+"\n"+out+stderr)
		return out + stderr
	}
	run(0, "install", "-f", v1, "--name", "vault")
	// The user's live edit, as kubectl edit does it.
	if _, err := cs.CoreV1().Secrets("vault-cni").Patch(ctx, "api-token", types.MergePatchType,
		[]byte(`{"data":{"token":"`+base64.StdEncoding.EncodeToString([]byte(userLive))+`"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	// Both changed the token: diff and upgrade stop on the conflict,
	// naming the field and not its values.
	for _, args := range [][]string{{"diff", "-f", v2, "--name", "vault"}, {"upgrade", "-f", v2, "--name", "vault"}} {
		if out := run(exitcode.Failed, args...); !strings.Contains(out, "Secret/vault-cni/api-token data.token") {
			t.Fatalf("the conflict does not name the Secret's field:\n%s", out)
		}
	}
	for _, o := range []string{"table", "json", "yaml"} {
		run(0, "diff", "-f", v2, "--name", "vault", "--prefer", "user", "-o", o)
	}
	run(exitcode.Failed, "upgrade", "-f", v2, "--name", "vault", "-o", "json")
	code, logs := cli(t, "upgrade", "-f", v2, "--name", "vault", "--prefer", "user", "--backup-dir", backups, "-v=6")
	if code != 0 || !strings.Contains(logs, `"Response" verb="PATCH"`) {
		t.Fatalf("upgrade at -v=6: exit %d, or no request logged:\n%s", code, logs)
	}
	outputs = append(outputs, "hitless upgrade -v=6\n"+logs)
	// What is scanned for is what the cluster holds: the user's value won.
	live, err := cs.CoreV1().Secrets("vault-cni").Get(ctx, "api-token", metav1.GetOptions{})
	if err != nil || string(live.Data["token"]) != userLive || string(live.Data["shared"]) != unchanged {
		t.Fatalf("the Secret after the upgrade: %v (%v)", live.Data, err)
	}
	for _, o := range []string{"table", "json", "yaml"} {
		run(0, "history", "--name", "vault", "-o", o)
		run(0, "status", "-o", o)
	}
	run(exitcode.Failed, "rollback", "--name", "vault")
	run(0, "rollback", "--name", "vault", "--prefer", "user", "--backup-dir", backups, "-o", "yaml")
	run(0, "uninstall", "--name", "vault", "--dry-run", "-o", "json")
	run(0, "uninstall", "--name", "vault", "--backup-dir", backups)

	forbidden := map[string]string{}
	for _, v := range []string{vendorOne, vendorTwo, userLive, unchanged} {
		forbidden[v] = v
		forbidden[base64.StdEncoding.EncodeToString([]byte(v))] = v
	}
	leak := func(where, text string) {
		t.Helper()
		for s, v := range forbidden {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the Secret value %q (as %q)", where, v, s)
			}
		}
	}
	for _, o := range outputs {
		leak(strings.SplitN(o, "\n", 2)[0], o)
	}
	cms, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		leak("ConfigMap "+cm.Namespace+"/"+cm.Name, fmt.Sprint(cm.Data)+inflated(t, cm.BinaryData))
	}
	events, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		leak("Event "+e.Namespace+"/"+e.Name, e.Message)
	}
	// The backups hold the values, in Secrets and in 0600 files only.
	secrets, err := cs.CoreV1().Secrets(store.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !anySecretHolds(t, secrets.Items, userLive) {
		t.Errorf("no Secret in %s holds the backup of the user's live value", store.Namespace)
	}
	files, err := os.ReadDir(backups)
	if err != nil || len(files) < 3 {
		t.Fatalf("backup files %v (%v): want the upgrade's, the rollback's and the uninstall's", files, err)
	}
	for _, f := range files {
		info, err := f.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("backup file %s has mode %v, want 0600", filepath.Join(backups, f.Name()), info.Mode().Perm())
		}
	}
}

// inflated is a ConfigMap's binary data as text, each value inflated
// when it is gzip (hitless's records are).
func inflated(t *testing.T, data map[string][]byte) string {
	var b strings.Builder
	for _, v := range data {
		zr, err := gzip.NewReader(bytes.NewReader(v))
		if err != nil {
			b.Write(v)
			continue
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
	}
	return b.String()
}

func anySecretHolds(t *testing.T, secrets []corev1.Secret, value string) bool {
	for _, s := range secrets {
		text := inflated(t, s.Data)
		if strings.Contains(text, value) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(value))) {
			return true
		}
	}
	return false
}
