package catalog

import (
	"context"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/snapshot"
)

func validating(name string, policy admissionv1.FailurePolicyType, timeout int32, svc string, resources ...string) admissionv1.ValidatingWebhookConfiguration {
	none := admissionv1.SideEffectClassNone
	w := admissionv1.ValidatingWebhook{
		Name: name + ".example.com", FailurePolicy: &policy, TimeoutSeconds: &timeout, SideEffects: &none,
		ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "hooks", Name: svc}},
	}
	if len(resources) > 0 {
		w.Rules = []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
			Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: resources}}}
	}
	return admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}, Webhooks: []admissionv1.ValidatingWebhook{w}}
}

func service(name string, ready ...bool) []runtime.Object {
	out := []runtime.Object{&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "hooks", Name: name}}}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "hooks", Name: name + "-x",
		Labels: map[string]string{discoveryv1.LabelServiceName: name}}}
	for _, r := range ready {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &r}})
	}
	return append(out, slice)
}

func TestWebhooks(t *testing.T) {
	tests := []struct {
		name    string
		hooks   []admissionv1.ValidatingWebhookConfiguration
		objects []runtime.Object
		status  check.Status
		msg     string
		refs    []string
	}{
		{"served and quick", []admissionv1.ValidatingWebhookConfiguration{validating("quota", admissionv1.Fail, 5, "quota", "configmaps")},
			service("quota", false, true), check.Pass, "1 admission webhooks", nil},
		{"no ready endpoint", []admissionv1.ValidatingWebhookConfiguration{validating("quota", admissionv1.Fail, 5, "quota", "configmaps")},
			service("quota", false), check.Fail, "quota.example.com) fails closed and its service hooks/quota has no ready endpoint",
			[]string{"ValidatingWebhookConfiguration/quota"}},
		{"service gone", []admissionv1.ValidatingWebhookConfiguration{validating("old", admissionv1.Fail, 5, "old", "configmaps")},
			nil, check.Fail, "its service hooks/old does not exist", []string{"ValidatingWebhookConfiguration/old"}},
		{"fails open on a gone service", []admissionv1.ValidatingWebhookConfiguration{validating("old", admissionv1.Ignore, 5, "old", "configmaps")},
			nil, check.Pass, "", nil},
		{"fails closed on pods", []admissionv1.ValidatingWebhookConfiguration{validating("policy", admissionv1.Fail, 5, "policy", "pods")},
			service("policy", true), check.Warn, "fails closed on creating pods or nodes in every namespace", []string{"ValidatingWebhookConfiguration/policy"}},
		{"slow", []admissionv1.ValidatingWebhookConfiguration{validating("slow", admissionv1.Ignore, 30, "slow", "configmaps")},
			service("slow", true), check.Warn, "may hold each matching write 30s", []string{"ValidatingWebhookConfiguration/slow"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &Input{Client: fake.NewClientset(tt.objects...), Snap: &snapshot.Snapshot{Errs: map[string]error{}, ValidatingWebhooks: tt.hooks}}
			out := webhooks(context.Background(), in)
			if out.Status != tt.status || !strings.Contains(out.Message, tt.msg) {
				t.Fatalf("got %s %q, want %s containing %q", out.Status, out.Message, tt.status, tt.msg)
			}
			if tt.refs != nil && !slices.Equal(out.Objects, tt.refs) {
				t.Fatalf("objects %v, want %v", out.Objects, tt.refs)
			}
		})
	}
}
