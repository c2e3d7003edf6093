// Command segd is the segd server and its command-line client.
//
//	segd serve                  run segd (embedded NATS, rules, membership API)
//	segd rule validate FILE...  check rule files without a server
//	segd member check USER SEG  ask whether a user is in a segment
//	segd member segments USER   list a user's segments
//	segd user show USER         a user's profile, segments, events, and why
//	segd segment ls             list segments with their sizes
//	segd segment count SEG      a segment's size
//	segd segment get|members|export|query|history|upload|preview   the segment API
//	segd watch [SEG...]         tail the change feed
//	segd status                 ingest progress
//	segd demo                   publish a synthetic e-commerce stream
//
// The client commands talk to a running segd over NATS (--nats).
package main

import (
	"fmt"
	"os"
	_ "time/tzdata" // time zones work on machines without a zoneinfo database

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "segd",
		Short:         "segd: real-time user segmentation over NATS",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCommand(), newRuleCommand(), newMemberCommand(), newSegmentCommand(),
		newStatusCommand(), newDemoCommand(), newWatchCommand())
	root.AddCommand(newAnalyzeCommand(), newUserCommand())
	return root
}
