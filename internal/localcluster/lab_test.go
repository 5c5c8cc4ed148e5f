package localcluster

import (
	"strings"
	"testing"

	"github.com/hitless-dev/hitless/internal/localcluster/lab"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// The lab's agents take their node's namespace as the host's (where the
// overlay check reads routes and the cutover removes devices), not PID
// 1's, which is the machine's; and they never reboot it.
func TestLabAgentManifest(t *testing.T) {
	var m string
	for _, line := range strings.Split(labAgentManifest("c1"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "args:") {
			m = line
		}
	}
	want := "--root=/, --host-netns=" + lab.NetNSDir + "/" + lab.NodeNamespace("c1", "$(NODE_NAME)") + ","
	for _, bad := range []string{agent.HostNetNSOfPID1, "--allow-reboot", "--root=/host"} {
		if strings.Contains(m, bad) {
			t.Errorf("the lab's agent args hold %q: %s", bad, m)
		}
	}
	if !strings.Contains(m, want) {
		t.Errorf("the lab's agent args lack %q: %s", want, m)
	}
}
