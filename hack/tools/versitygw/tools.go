//go:build tools

// Package tools pins versitygw for hack/build-tools.
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
