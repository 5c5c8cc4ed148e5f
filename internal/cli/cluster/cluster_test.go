package cluster

import (
	"strings"
	"testing"
	"time"
)

// FuzzFault: `cluster fault` arguments of any text are a fault the lab
// can inject or an error; never a panic, a negative or endless link-down,
// or a loss outside 0-100 %.
func FuzzFault(f *testing.F) {
	for _, a := range []string{"link-down 2s", "loss 5%", "restart-agent", "loss -1", "link-down 2h", "", "link-down", "delete-link flannel.1", "delete-link"} {
		f.Add("n1", a)
	}
	f.Fuzz(func(t *testing.T, node, args string) {
		fault, err := parseFault(node, strings.Fields(args))
		if err != nil {
			return
		}
		if node == "" || fault.Node != node {
			t.Fatalf("fault on node %q accepted for --node %q", fault.Node, node)
		}
		switch fault.Kind {
		case "link-down":
			if fault.Duration <= 0 || fault.Duration > time.Hour {
				t.Fatalf("link-down for %s accepted", fault.Duration)
			}
		case "loss":
			if fault.Percent < 0 || fault.Percent > 100 {
				t.Fatalf("loss of %d%% accepted", fault.Percent)
			}
		case "restart-agent":
		case "delete-link":
			if fault.Link == "" {
				t.Fatal("delete-link of no device accepted")
			}
		default:
			t.Fatalf("unknown fault %q accepted", fault.Kind)
		}
	})
}

// FuzzLabels: --node-labels of any text is key=value pairs with non-empty
// keys, or an error naming the flag.
func FuzzLabels(f *testing.F) {
	for _, s := range []string{"pool=a,zone=b", "pool", " = x", "", "a=b=c,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		labels, err := parseLabels(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--node-labels: ") {
				t.Fatalf("error %q does not name the flag", err)
			}
			return
		}
		for k := range labels {
			if k == "" || strings.TrimSpace(k) != k || !strings.Contains(s, k) {
				t.Fatalf("key %q read from %q", k, s)
			}
		}
	})
}
