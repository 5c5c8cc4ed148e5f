package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The API group and version.
const (
	Group   = "hitless.dev"
	Version = "v1alpha1"
)

// GroupVersion is hitless.dev/v1alpha1.
func GroupVersion() schema.GroupVersion { return schema.GroupVersion{Group: Group, Version: Version} }

// AddToScheme registers the API's types with s.
func AddToScheme(s *runtime.Scheme) error {
	gv := GroupVersion()
	s.AddKnownTypes(gv, &NodeRoll{}, &NodeRollList{}, &Component{}, &ComponentList{}, &Migration{}, &MigrationList{})
	metav1.AddToGroupVersion(s, gv)
	return nil
}
