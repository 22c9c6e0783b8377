//go:build tools

// Package tools pins the Kubernetes control-plane commands that hack/build-tools builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"

	// etcd at the version k8s.io/kubernetes v1.36.3 itself requires, so it shares the build.
	_ "go.etcd.io/etcd/server/v3"
)
