package controller

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// FieldError is a NodeRoll field admission could not judge and the
// controller refuses: Field is its path in the resource.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// rollSpec turns a NodeRoll's spec into the roll engine's, checking what
// the API server's admission cannot (the selector's meaning, registered
// actions, the time zone) and naming the field of whatever is wrong.
func rollSpec(nr *v1alpha1.NodeRoll, actions *roll.Actions) (roll.Spec, error) {
	in := nr.Spec
	s := roll.Spec{Nodes: append([]string(nil), in.Nodes...), Order: in.Order, Canary: int(in.Canary), MaxFailures: int(in.MaxFailures)}
	if in.NodeSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(in.NodeSelector)
		if err != nil {
			return s, &FieldError{Field: "spec.nodeSelector", Msg: err.Error()}
		}
		s.Selector = sel.String()
	}
	switch in.Batch.Type {
	case intstr.Int:
		s.Batch = strconv.Itoa(int(in.Batch.IntVal))
	default:
		s.Batch = in.Batch.StrVal
	}
	acts, err := nodeActions(in)
	if err != nil {
		return s, err
	}
	into(&s, acts)
	if d := in.Drain; d != nil {
		s.DrainTimeout = duration(d.Timeout)
		s.OnDrainTimeout = d.OnTimeout
		s.Force = d.Force
		s.DeleteEmptyDirData = d.DeleteEmptyDirData
		s.EvictRetryDelay = duration(d.EvictRetryDelay)
	}
	s.ActionTimeout = duration(in.ActionTimeout)
	s.Defaults()
	if err := s.Validate(); err != nil {
		return s, resourceField(err)
	}
	if err := validateActions(actions, acts); err != nil {
		return s, err
	}
	if _, err := probeSpec(in.Probe); err != nil {
		return s, err
	}
	if w := in.MaintenanceWindow; w != nil {
		if _, err := time.LoadLocation(w.TimeZone); err != nil {
			return s, &FieldError{Field: "spec.maintenanceWindow.timeZone", Msg: fmt.Sprintf("%q is not a time zone this controller knows: %v", w.TimeZone, err)}
		}
	}
	return s, nil
}

// resourceField renames an engine's field error to the resource's field.
func resourceField(err error) error {
	var fe *operation.FieldError
	if !errors.As(err, &fe) {
		return &FieldError{Field: "spec", Msg: err.Error()}
	}
	return &FieldError{Field: resourcePath(fe.Field), Msg: fe.Msg}
}

// resourcePath is the NodeRoll's path of a roll engine's spec field.
func resourcePath(engineField string) string {
	switch engineField {
	case "selector":
		return "spec.nodeSelector"
	case "drainTimeout":
		return "spec.drain.timeout"
	case "onDrainTimeout":
		return "spec.drain.onTimeout"
	case "evictRetryDelay":
		return "spec.drain.evictRetryDelay"
	case "force", "deleteEmptyDirData":
		return "spec.drain." + engineField
	}
	return "spec." + engineField
}

func duration(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}
