package transient

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestIs(t *testing.T) {
	gr := schema.GroupResource{Group: "core.sample.hitless.dev", Resource: "globalsystemconfigs"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"not found", apierrors.NewNotFound(gr, "default"), false},
		// What client-go makes of the plain-text 404 of a type whose CRD
		// is gone: NotFound, and an unexpected server response.
		{"an unserved type's 404", apierrors.NewGenericServerResponse(404, "get", gr, "default", "404 page not found", 0, true), false},
		{"forbidden", apierrors.NewForbidden(gr, "default", errors.New("no")), false},
		{"conflict", apierrors.NewConflict(gr, "default", errors.New("changed")), false},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), true},
		{"request timeout", apierrors.NewGenericServerResponse(408, "get", gr, "default", "", 0, true), true},
		{"service unavailable", apierrors.NewServiceUnavailable("restarting"), true},
		{"an unexpected 502", apierrors.NewGenericServerResponse(502, "get", gr, "default", "bad gateway", 0, true), true},
		{"internal error", apierrors.NewInternalError(errors.New("etcd")), true},
		{"connection refused, wrapped", fmt.Errorf("reading: %w", syscall.ECONNREFUSED), true},
		{"anything else", errors.New("invalid object"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Is(tc.err); got != tc.want {
				t.Errorf("Is(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// A type that is no longer served is answered at once, not retried for
// a minute: uninstall reads every object of the component after the
// CRDs are gone.
func TestRetryReturnsAnUnservedTypesNotFoundAtOnce(t *testing.T) {
	gr := schema.GroupResource{Group: "core.sample.hitless.dev", Resource: "globalsystemconfigs"}
	calls := 0
	err := Retry(context.Background(), func() error {
		calls++
		return apierrors.NewGenericServerResponse(404, "get", gr, "default", "404 page not found", 0, true)
	})
	if !apierrors.IsNotFound(err) || calls != 1 {
		t.Errorf("Retry: %v after %d call(s), want NotFound after 1", err, calls)
	}
}
