package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host"
	"github.com/segd/segd/rules"
)

type (
	apiSegment = api.SegmentInfo
	apiStatus  = api.StatusReply
)

func newRuleCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "rule", Short: "Work with rule files"}
	var retentionDays int
	validate := &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Check rule files and print every problem with its file, line and segment",
		Long: `Check rule files without a running segd. Exit status 1 when any
problem is found.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			segs, err := host.LoadRules(rules.Options{MaxWindowDays: retentionDays}, args...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d segments\n", len(segs))
			return nil
		},
	}
	validate.Flags().IntVar(&retentionDays, "retention-days", rules.DefaultMaxWindowDays, "the longest window allowed")
	cmd.AddCommand(validate)
	return cmd
}
