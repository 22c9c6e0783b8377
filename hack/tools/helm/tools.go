//go:build tools

// Package tools pins helm for hack/build-tools.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
