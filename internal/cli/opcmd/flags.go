package opcmd

import "regexp"

// FlagText renders an engine's text for the command line: every spec
// field it names becomes the flag that sets it.
func FlagText(s string) string {
	// An engine names a spec field as `field`.
	fieldRef := regexp.MustCompile("`([A-Za-z]+)`")
	return fieldRef.ReplaceAllStringFunc(s, func(m string) string {
		field := m[1 : len(m)-1]
		if f := flagOf(field); f != "" {
			return f
		}
		return field
	})
}

// flagOf is the flag that sets a spec field, or "".
func flagOf(field string) string {
	switch field {
	case "selector", "nodes", "batch", "order", "canary", "force", "confirm", "name", "prefer", "from", "revision":
		return "--" + field
	case "onDrainTimeout":
		return "--on-drain-timeout"
	case "maxFailures":
		return "--max-failures"
	case "drainTimeout":
		return "--drain-timeout"
	case "actionTimeout":
		return "--action-timeout"
	case "evictRetryDelay":
		return "--evict-retry-delay"
	case "restartDaemonSet":
		return "--restart-daemonset"
	case "setNodeLabels":
		return "--set-node-label"
	case "waitNodeAnnotation":
		return "--wait-node-annotation"
	case "exec":
		return "--exec"
	case "actions":
		return "--action"
	case "preNodeActions":
		return "--pre-node-action"
	case "postNodeActions":
		return "--post-node-action"
	case "preNode":
		return "--pre-node"
	case "postNode":
		return "--post-node"
	case "deleteEmptyDirData":
		return "--delete-emptydir-data"
	case "approve":
		return "--yes"
	case "nodeSelectors":
		return "--node-selector"
	case "dataPlane":
		return "--data-plane"
	case "forceNamespaces":
		return "--force-namespaces"
	case "allowMixedVersions":
		return "--allow-mixed-versions"
	case "skipHooks":
		return "--skip-hooks"
	case "maxOutage":
		return "--max-outage"
	case "maxLoss":
		return "--max-loss"
	case "onBudget":
		return "--on-budget"
	case "source":
		return "-f"
	case "wait", "profile":
		return "--" + field
	case "finalizerTimeout":
		return "--finalizer-timeout"
	}
	return ""
}
