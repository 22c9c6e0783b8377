//go:build tools

// Package tools pins promtool (Prometheus's rule checker and rule unit-test runner) for hack/build-tools.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
