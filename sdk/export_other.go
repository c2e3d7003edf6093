//go:build !wasip1

package sdk

import (
	"context"
	"log/slog"
)

// hostLog logs through log/slog outside WASM, so that plugin code runs
// unchanged in native tests.
func hostLog(level int32, msg string) {
	slog.Log(context.Background(), slog.Level(level), msg, "source", "plugin")
}
