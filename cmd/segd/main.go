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
//	segd auth init FILE         users for the embedded NATS server (serve --auth)
//	segd bench ingest|member    measure segd end to end beside baselines
//
// The client commands talk to a running segd over NATS (--nats, with the
// credential and TLS flags natscli users know; docs/security.md).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	_ "time/tzdata" // time zones work on machines without a zoneinfo database

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		printError(os.Stderr, err)
		os.Exit(1)
	}
}

// usageError is a wrong use of a command (arguments or flags): it is
// printed with the command's usage line.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// printError writes a command's error once, with the usage line when the
// command was used wrongly.
func printError(w io.Writer, err error) {
	fmt.Fprintln(w, "error:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(w, "usage: %s\nRun '%s --help' for more.\n", ue.cmd.UseLine(), ue.cmd.CommandPath())
	}
}

// withUsageErrors makes every argument and flag error of cmd and its
// subcommands a usageError.
func withUsageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{c, err} })
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return &usageError{c, err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		withUsageErrors(sub)
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
	root.AddCommand(newAnalyzeCommand(), newUserCommand(), newAuthCommand())
	root.AddCommand(newPluginCommand())
	root.AddCommand(newBenchCommand())
	withUsageErrors(root)
	return root
}
