package catalog

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/check/snapshot"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// FuzzAgentReport: an agent's published report of any shape is decoded
// or refused; what decodes runs through every agent check and into the
// run's node results, each tied to its node.
func FuzzAgentReport(f *testing.F) {
	f.Add([]byte(`{"node":"n1","request":"r","results":[{"id":"node.mtu","status":"Pass"}],"peers":[{"node":"n2","tcp":true,"udp":false,"udpError":"x"}],"apiserver":{"latencyMs":2},"dns":{"error":"nx"}}`))
	f.Add([]byte(`{"results":[null,{"id":""}],"peers":[{"node":""},{"node":"n1"}],"dns":null}`))
	prof, err := profile.Get("generic")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		z, err := store.Compress(b)
		if err != nil {
			t.Fatal(err)
		}
		var rep agent.Report
		if store.Unpack(z, &rep) != nil {
			return
		}
		other := rep
		other.Node = "n2"
		snap := &snapshot.Snapshot{Nodes: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, {ObjectMeta: metav1.ObjectMeta{Name: "n2"}}},
			DNSService: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kube-dns"}}}
		in := &Input{Kind: profile.Postflight, Snap: snap, Profile: prof, AgentsAsked: true,
			Agents: map[string]*agent.Report{"n1": &rep, "n2": &other}}
		for _, c := range agentChecks() {
			if out := c.Run(context.Background(), in); out.Status == "" {
				t.Fatalf("%s: no status", c.ID())
			}
		}
		for _, r := range nodeResults(in, func(string) check.Severity { return check.Hard }) {
			if r.Node != "n1" && r.Node != "n2" {
				t.Fatalf("a node result tied to %q", r.Node)
			}
		}
	})
}
