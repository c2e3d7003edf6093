package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host"
	"github.com/segd/segd/rules"
)

type apiSegment = api.SegmentInfo

func newRuleCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "rule", Short: "Work with rule files"}
	var (
		retentionDays int
		pluginsDir    string
		schema        string
	)
	validate := &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Check rule files and print every problem with its file, line and segment",
		Long: `Check rule files without a running segd. Exit status 1 when any
problem is found.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if retentionDays < 1 { // 0 would mean rules' default, not no history
				return fmt.Errorf("--retention-days %d: must be at least 1", retentionDays)
			}
			opts := rules.Options{MaxWindowDays: retentionDays}
			var err error
			if schema != "" {
				if opts.Schema, err = host.LoadSchema(schema); err != nil {
					return err
				}
			}
			if pluginsDir != "" {
				dir, err := os.MkdirTemp("", "segd-validate-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				reg, err := host.LoadPlugins(cmd.Context(), pluginsDir, dir, slog.New(slog.DiscardHandler), false)
				if err != nil {
					return err
				}
				defer reg.Close(cmd.Context())
				opts.Plugins = reg
			}
			segs, err := host.LoadRules(opts, args...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %s\n", plural(len(segs), "segment"))
			return nil
		},
	}
	validate.Flags().IntVar(&retentionDays, "retention-days", rules.DefaultMaxWindowDays, "the longest window allowed")
	validate.Flags().StringVar(&pluginsDir, "plugins", "", "directory of WASM plugins that rules may name")
	validate.Flags().StringVar(&schema, "schema", "", "event schema file to check rules against")
	cmd.AddCommand(validate)
	addRuleAdminCommands(cmd)
	return cmd
}
