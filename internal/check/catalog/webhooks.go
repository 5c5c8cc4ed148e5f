package catalog

import (
	"context"
	"fmt"
	"slices"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hitless-dev/hitless/internal/check"
)

// maxWebhookTimeout is the API server's default webhook timeout: a
// webhook that may hold a write longer slows every write the operation
// makes while its backend is unreachable.
const maxWebhookTimeout = 10

// hook is one webhook of either kind, as the check reads it.
type hook struct {
	kind, config, name string
	policy             admissionv1.FailurePolicyType
	timeout            int32
	service            *admissionv1.ServiceReference
	rules              []admissionv1.RuleWithOperations
	scoped             bool // a namespace or object selector narrows it
}

func (h hook) ref() string { return h.kind + "/" + h.config }

func (h hook) String() string { return fmt.Sprintf("%s %s (webhook %s)", h.kind, h.config, h.name) }

func hooks(in *Input) []hook {
	var out []hook
	add := func(kind, config, name string, policy *admissionv1.FailurePolicyType, timeout *int32, cc admissionv1.WebhookClientConfig,
		rules []admissionv1.RuleWithOperations, ns, obj *metav1.LabelSelector) {
		h := hook{kind: kind, config: config, name: name, policy: admissionv1.Fail, timeout: maxWebhookTimeout, service: cc.Service, rules: rules,
			scoped: !emptySelector(ns) || !emptySelector(obj)}
		if policy != nil {
			h.policy = *policy
		}
		if timeout != nil {
			h.timeout = *timeout
		}
		out = append(out, h)
	}
	for _, c := range in.Snap.ValidatingWebhooks {
		for _, w := range c.Webhooks {
			add("ValidatingWebhookConfiguration", c.Name, w.Name, w.FailurePolicy, w.TimeoutSeconds, w.ClientConfig, w.Rules, w.NamespaceSelector, w.ObjectSelector)
		}
	}
	for _, c := range in.Snap.MutatingWebhooks {
		for _, w := range c.Webhooks {
			add("MutatingWebhookConfiguration", c.Name, w.Name, w.FailurePolicy, w.TimeoutSeconds, w.ClientConfig, w.Rules, w.NamespaceSelector, w.ObjectSelector)
		}
	}
	return out
}

func emptySelector(s *metav1.LabelSelector) bool {
	return s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0)
}

// createsPods tells whether a rule intercepts the creation of pods or
// nodes: what a network operation does on every node.
func (h hook) createsPods() bool {
	for _, r := range h.rules {
		creates := slices.Contains(r.Operations, admissionv1.Create) || slices.Contains(r.Operations, admissionv1.OperationAll)
		core := slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, "*")
		if !creates || !core {
			continue
		}
		for _, res := range r.Resources {
			if res == "*" || res == "pods" || res == "nodes" {
				return true
			}
		}
	}
	return false
}

// webhooks finds the admission webhooks that would refuse or stall the
// writes of an operation on the network: fail-closed webhooks whose
// service has no ready endpoint (every matching write is refused now),
// and, as warnings, fail-closed webhooks on pods or nodes (refused while
// their backend is unreachable during the operation) and timeouts over
// the API server's default.
func webhooks(ctx context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("webhooks"); err != nil {
		return check.Errored(err)
	}
	all := hooks(in)
	var down, warn, objs []string
	for _, h := range all {
		if h.service != nil && h.policy == admissionv1.Fail {
			why, err := unserved(ctx, in, h.service)
			if err != nil {
				return check.Errored(fmt.Errorf("reading the endpoints of %s: %w", h, err))
			}
			if why != "" {
				down = append(down, fmt.Sprintf("%s fails closed and %s: every write it matches is refused", h, why))
				objs = append(objs, h.ref())
				continue
			}
		}
		switch {
		case h.policy == admissionv1.Fail && h.createsPods() && !h.scoped:
			warn = append(warn, fmt.Sprintf("%s fails closed on creating pods or nodes in every namespace: while its backend is unreachable, no pod (the network plugin's own included) can be created", h))
			objs = append(objs, h.ref())
		case h.timeout > maxWebhookTimeout:
			warn = append(warn, fmt.Sprintf("%s may hold each matching write %ds (the default is %ds) while its backend is unreachable", h, h.timeout, maxWebhookTimeout))
			objs = append(objs, h.ref())
		}
	}
	switch {
	case len(down) > 0:
		return check.Outcome{Status: check.Fail, Message: summarize(append(down, warn...)), Objects: dedupe(objs),
			Remediation: "bring the webhook's service back, or delete the configuration of a webhook whose component is gone, before the operation"}
	case len(warn) > 0:
		return check.Outcome{Status: check.Warn, Message: summarize(warn), Objects: dedupe(objs),
			Remediation: fmt.Sprintf("for the operation, set failurePolicy Ignore, a namespaceSelector that leaves out the network plugin's namespaces, or timeoutSeconds %d or less", maxWebhookTimeout)}
	}
	return check.Passed("%d admission webhooks: every fail-closed one is served, none holds a write over %ds", len(all), maxWebhookTimeout)
}

// unserved says why a webhook's service cannot answer: the service does
// not exist or none of its endpoints is ready; "" when one is.
func unserved(ctx context.Context, in *Input, svc *admissionv1.ServiceReference) (string, error) {
	name := svc.Namespace + "/" + svc.Name
	if _, err := in.Client.CoreV1().Services(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return "its service " + name + " does not exist", nil
	} else if err != nil {
		return "", err
	}
	slices, err := in.Client.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
	if err != nil {
		return "", err
	}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return "", nil
			}
		}
	}
	return "its service " + name + " has no ready endpoint", nil
}
