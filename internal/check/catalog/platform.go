package catalog

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hitless-dev/hitless/internal/check"
)

func platformChecks() []check.Check[*Input] {
	return []check.Check[*Input]{
		check.Func[*Input]{Name: "platform.readyz", Heading: "The API server is ready (/readyz)", Fn: readyz},
		check.Func[*Input]{Name: "platform.apiservices", Heading: "Every APIService is Available", Fn: apiServices},
		check.Func[*Input]{Name: "platform.webhooks", Heading: "Admission webhooks are served and cannot stall the operation", Fn: webhooks},
		check.Func[*Input]{Name: "openshift.clusteroperators", Heading: "Every ClusterOperator Available, not Progressing, not Degraded", Fn: clusterOperators},
		check.Func[*Input]{Name: "openshift.machineconfigpools", Heading: "Every MachineConfigPool Updated and not Degraded", Fn: machineConfigPools},
		check.Func[*Input]{Name: "openshift.network-type", Heading: "The cluster network type is the expected one", Fn: networkType},
	}
}

func readyz(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("readyz"); err != nil {
		var failed []string
		for _, l := range strings.Split(in.Snap.Readyz, "\n") {
			if strings.HasPrefix(l, "[-]") {
				failed = append(failed, strings.TrimPrefix(l, "[-]"))
			}
		}
		msg := err.Error()
		if len(failed) > 0 {
			msg = "failing: " + strings.Join(failed, "; ")
		}
		return check.Outcome{Status: check.Fail, Message: msg, Remediation: "kubectl get --raw '/readyz?verbose' and repair the failing checks"}
	}
	return check.Passed("/readyz: ok")
}

// condition returns the status, reason and message of condition t in an
// unstructured object's status.conditions.
func condition(u *unstructured.Unstructured, t string) (status, reason, message string) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != t {
			continue
		}
		s, _ := m["status"].(string)
		r, _ := m["reason"].(string)
		msg, _ := m["message"].(string)
		return s, r, msg
	}
	return "Unknown", "", "no " + t + " condition"
}

func apiServices(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("apiservices"); err != nil {
		return check.Errored(err)
	}
	var objs, why []string
	for i := range in.Snap.APIServices {
		a := &in.Snap.APIServices[i]
		st, reason, msg := condition(a, "Available")
		if st != "True" {
			objs = append(objs, "APIService/"+a.GetName())
			why = append(why, fmt.Sprintf("%s Available=%s %s: %s", a.GetName(), st, reason, oneLine(msg)))
		}
	}
	if len(objs) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("%d APIService(s) unavailable; namespace deletion and garbage collection stall until they answer: %s", len(objs), summarize(why)),
			Objects:     objs,
			Remediation: "repair the service behind each APIService, or delete the APIService if its component is gone"}
	}
	return check.Passed("all %d APIServices Available", len(in.Snap.APIServices))
}

func clusterOperators(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("clusteroperators"); err != nil {
		return check.Errored(err)
	}
	if in.Snap.ClusterOperators == nil {
		return check.Skipped("not OpenShift: no config.openshift.io ClusterOperator API")
	}
	want := map[string]string{"Available": "True", "Progressing": "False", "Degraded": "False"}
	var objs, why []string
	for i := range in.Snap.ClusterOperators {
		co := &in.Snap.ClusterOperators[i]
		var bad []string
		for _, t := range []string{"Available", "Progressing", "Degraded"} {
			if st, reason, msg := condition(co, t); st != want[t] {
				bad = append(bad, fmt.Sprintf("%s=%s %s %s", t, st, reason, oneLine(msg)))
			}
		}
		if len(bad) > 0 {
			objs = append(objs, "ClusterOperator/"+co.GetName())
			why = append(why, co.GetName()+": "+strings.Join(bad, ", "))
		}
	}
	if len(objs) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("%d ClusterOperator(s) unhealthy: %s", len(objs), summarize(why)),
			Objects:     objs,
			Remediation: "oc get co; wait for the operators to settle or repair them before changing the network"}
	}
	return check.Passed("all %d ClusterOperators Available, not Progressing, not Degraded", len(in.Snap.ClusterOperators))
}

func machineConfigPools(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("machineconfigpools"); err != nil {
		return check.Errored(err)
	}
	if in.Snap.MachineConfigPools == nil {
		return check.Skipped("not OpenShift: no machineconfiguration.openshift.io MachineConfigPool API")
	}
	var objs, why []string
	for i := range in.Snap.MachineConfigPools {
		mcp := &in.Snap.MachineConfigPools[i]
		var bad []string
		if st, reason, msg := condition(mcp, "Updated"); st != "True" {
			bad = append(bad, fmt.Sprintf("Updated=%s %s %s", st, reason, oneLine(msg)))
		}
		if st, reason, msg := condition(mcp, "Degraded"); st == "True" {
			bad = append(bad, fmt.Sprintf("Degraded=%s %s %s", st, reason, oneLine(msg)))
		}
		total, _, _ := unstructured.NestedInt64(mcp.Object, "status", "machineCount")
		updated, _, _ := unstructured.NestedInt64(mcp.Object, "status", "updatedMachineCount")
		if total != updated {
			bad = append(bad, fmt.Sprintf("%d of %d machines updated", updated, total))
		}
		if len(bad) > 0 {
			objs = append(objs, "MachineConfigPool/"+mcp.GetName())
			why = append(why, mcp.GetName()+": "+strings.Join(bad, ", "))
		}
	}
	if len(objs) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("%d MachineConfigPool(s) not updated: %s", len(objs), summarize(why)),
			Objects:     objs,
			Remediation: "oc get mcp; wait until every pool is Updated and none is Degraded"}
	}
	return check.Passed("all %d MachineConfigPools Updated", len(in.Snap.MachineConfigPools))
}

func networkType(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("networks.config"); err != nil {
		return check.Errored(err)
	}
	if in.Snap.NetworkConfigs == nil {
		return check.Skipped("not OpenShift: no config.openshift.io Network API")
	}
	want := in.NetworkType
	if want == "" {
		return check.Skipped("no expected network type (profile or --network-type)")
	}
	for i := range in.Snap.NetworkConfigs {
		n := &in.Snap.NetworkConfigs[i]
		if n.GetName() != "cluster" {
			continue
		}
		got, _, _ := unstructured.NestedString(n.Object, "status", "networkType")
		if got != want {
			return check.Outcome{Status: check.Fail,
				Message:     fmt.Sprintf("status.networkType is %q, expected %q", got, want),
				Objects:     []string{"Network.config.openshift.io/cluster"},
				Remediation: "the migration has not finished: check the network ClusterOperator and oc get network.config cluster -o yaml"}
		}
		return check.Passed("status.networkType is %s", got)
	}
	return check.Outcome{Status: check.Fail, Message: "no Network.config.openshift.io named cluster", Objects: []string{"Network.config.openshift.io/cluster"}}
}
