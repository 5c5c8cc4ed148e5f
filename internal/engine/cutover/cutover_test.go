package cutover

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hitless-dev/hitless/internal/engine/roll"
)

const good = `{"from": {"daemonSet": "kube-system/kube-router", "value": "kube-router", "cniConfigs": ["10-kuberouter.conflist"], "links": ["kube-bridge"]},
 "to": {"daemonSet": "kube-flannel/kube-flannel-ds", "value": "flannel", "cniConfigs": ["10-flannel.conflist"], "links": ["flannel.1", "cni0"], "annotations": ["flannel.alpha.coreos.com/"]}}`

func TestDecode(t *testing.T) {
	p, err := Decode(json.RawMessage(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Label != DefaultLabel || p.Agents != DefaultAgents {
		t.Errorf("defaults: label %q, agents %q", p.Label, p.Agents)
	}
	tests := []struct {
		name, params, field string
	}{
		{"unknown parameter", `{"form": {}}`, "actions.cutover"},
		{"no source DaemonSet", `{"to": {"daemonSet": "a/b", "value": "x"}, "from": {"value": "y"}}`, "actions.cutover.from.daemonSet"},
		{"no target value", `{"from": {"daemonSet": "a/b", "value": "x"}, "to": {"daemonSet": "a/c"}}`, "actions.cutover.to.value"},
		{"same value", `{"from": {"daemonSet": "a/b", "value": "x"}, "to": {"daemonSet": "a/c", "value": "x"}}`, "actions.cutover.to.value"},
		{"same DaemonSet", `{"from": {"daemonSet": "a/b", "value": "x"}, "to": {"daemonSet": "a/b", "value": "y"}}`, "actions.cutover.to.daemonSet"},
		{"path as a CNI file", `{"from": {"daemonSet": "a/b", "value": "x", "cniConfigs": ["../../etc/passwd"]}, "to": {"daemonSet": "a/c", "value": "y"}}`, "actions.cutover.from"},
		{"not a CNI file", `{"from": {"daemonSet": "a/b", "value": "x", "cniConfigs": ["kubelet.conf.bak"]}, "to": {"daemonSet": "a/c", "value": "y"}}`, "actions.cutover.from"},
		{"loopback", `{"from": {"daemonSet": "a/b", "value": "x", "links": ["lo"]}, "to": {"daemonSet": "a/c", "value": "y"}}`, "actions.cutover.from"},
		{"shared configuration", `{"from": {"daemonSet": "a/b", "value": "x", "cniConfigs": ["10-a.conflist"]}, "to": {"daemonSet": "a/c", "value": "y", "cniConfigs": ["10-a.conflist"]}}`, "actions.cutover.from.cniConfigs"},
		{"bad label", `{"label": "a b", "from": {"daemonSet": "a/b", "value": "x"}, "to": {"daemonSet": "a/c", "value": "y"}}`, "actions.cutover.label"},
		{"bad agents", `{"agents": "hitless-agent", "from": {"daemonSet": "a/b", "value": "x"}, "to": {"daemonSet": "a/c", "value": "y"}}`, "actions.cutover.agents"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(json.RawMessage(tc.params))
			var se *roll.SpecError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *roll.SpecError", err)
			}
			if se.Field != tc.field {
				t.Errorf("field %q (%v), want %q", se.Field, err, tc.field)
			}
		})
	}
}

// The inverse moves a node back: the planes swap, nothing else changes,
// and the registry inverts a roll's actions newest first.
func TestInverse(t *testing.T) {
	a := roll.DefaultActions()
	if err := a.Register(Type()); err != nil {
		t.Fatal(err)
	}
	inv, err := a.Inverse([]roll.ActionSpec{{Name: ActionName, Params: json.RawMessage(good)}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Decode(inv[0].Params)
	if err != nil {
		t.Fatal(err)
	}
	if p.From.Value != "flannel" || p.To.Value != "kube-router" || p.To.Links[0] != "kube-bridge" || p.From.Annotations[0] != "flannel.alpha.coreos.com/" {
		t.Errorf("inverse = %+v", p)
	}
	if _, err := a.Inverse([]roll.ActionSpec{{Name: ActionName, Params: json.RawMessage(good)}, {Name: roll.ActionExec, Params: json.RawMessage(`{"command": "true"}`)}}); err == nil || !strings.Contains(err.Error(), `"exec" cannot be undone`) {
		t.Errorf("an exec has no inverse: err = %v", err)
	}
}

func TestMixed(t *testing.T) {
	tests := []struct {
		name     string
		from, to []string
		ok       bool
		want     string
	}{
		{"kube-router and flannel", []string{"docker.io/cloudnativelabs/kube-router:v2.1.0"}, []string{"ghcr.io/flannel-io/flannel:v0.27.4", "ghcr.io/flannel-io/flannel-cni-plugin:v1.7.1"}, false, "kube-router and flannel do not route"},
		{"one plugin's two DaemonSets", []string{"ghcr.io/flannel-io/flannel:v0.26.0"}, []string{"ghcr.io/flannel-io/flannel:v0.27.4"}, true, "both are flannel"},
		{"flannel to Calico", []string{"ghcr.io/flannel-io/flannel:v0.27.4"}, []string{"quay.io/calico/node:v3.30.0", "quay.io/calico/cni:v3.30.0"}, true, "VXLAN"},
		{"unknown", []string{"registry.example.com/vrouter-agent:2024.1"}, []string{"ghcr.io/flannel-io/flannel:v0.27.4"}, false, "vrouter-agent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := Mixed(tc.from, tc.to)
			if ok != tc.ok || !strings.Contains(why, tc.want) {
				t.Errorf("Mixed = %v, %q; want %v and %q", ok, why, tc.ok, tc.want)
			}
		})
	}
}
