package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host"
)

// addRuleAdminCommands adds the rules admin API's commands (apply, get,
// ls, rm, history, diff) to `segd rule`.
func addRuleAdminCommands(cmd *cobra.Command) {
	cmd.AddCommand(newRuleApplyCommand(), newRuleGetCommand(), newRuleListCommand(), newRuleRemoveCommand(), newRuleHistoryCommand(), newRuleDiffCommand())
}

func newRuleApplyCommand() *cobra.Command {
	var f clientFlags
	var paths []string
	var wait bool
	var author string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR",
		Short: "Upload rule files to a running segd: each segment becomes a revision in SEGD_RULES",
		Long: `Validate rule files against the running rules, then put each segment
through the rules admin API. They take effect without a restart: each is
rebuilt from the event log and swapped in (--wait waits until all serve
their new revision). Named predicates stay in rule files.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(paths) == 0 {
				return errors.New("-f FILE|DIR is required")
			}
			files, err := host.ReadRuleFiles(paths...)
			if err != nil {
				return err
			}
			var defs []string
			req := api.RuleValidateRequest{}
			for _, file := range files {
				req.Files = append(req.Files, api.RuleFile{Name: file.Name, Data: string(file.Data)})
				d, err := splitSegments(file.Name, file.Data)
				if err != nil {
					return err
				}
				defs = append(defs, d...)
			}
			timeout := f.timeout
			if wait {
				f.timeout = 24 * time.Hour // the client's per-request timeout stays --timeout
			}
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				rctx, cancel := context.WithTimeout(ctx, timeout)
				v, err := c.ValidateRules(rctx, req)
				cancel()
				if err != nil {
					return nil, err
				}
				if !v.Valid {
					for _, e := range v.Errors {
						fmt.Fprintln(cmd.ErrOrStderr(), formatRuleError(e))
					}
					return nil, fmt.Errorf("%d problems: nothing applied", len(v.Errors))
				}
				var out []*api.RulePutReply
				for _, d := range defs {
					rctx, cancel := context.WithTimeout(ctx, timeout)
					p, err := c.PutRule(rctx, api.RulePutRequest{Definition: d, Author: author})
					cancel()
					if err != nil {
						return out, err
					}
					if !f.json {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: revision %d stored, rebuilding\n", p.Segment, p.Revision)
					}
					out = append(out, p)
				}
				if wait {
					return out, waitServing(ctx, c, out, timeout, f.json, cmd.ErrOrStderr())
				}
				return out, nil
			}, func(w io.Writer, _ any) {
				if wait {
					fmt.Fprintln(w, "all serve their new revision")
				}
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringSliceVarP(&paths, "file", "f", nil, "rule file or directory of them (repeatable)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every segment serves its new revision, showing progress")
	cmd.Flags().StringVar(&author, "author", os.Getenv("USER"), "author recorded with each revision")
	return cmd
}

// waitServing polls rule.get until every put serves its revision.
func waitServing(ctx context.Context, c *client.Client, puts []*api.RulePutReply, timeout time.Duration, quiet bool, w io.Writer) error {
	for _, p := range puts {
		last := ""
		for {
			rctx, cancel := context.WithTimeout(ctx, timeout)
			r, err := c.GetRule(rctx, p.Segment)
			cancel()
			if err != nil {
				return err
			}
			if r.Revision != p.Revision {
				return fmt.Errorf("%s: revision %d was replaced by %d meanwhile", p.Segment, p.Revision, r.Revision)
			}
			if r.Serving == p.Revision && r.State == "active" {
				break
			}
			line := fmt.Sprintf("%s: rebuilding revision %d (serving %d, %s)", p.Segment, p.Revision, r.Serving, r.State)
			if r.Rebuild != nil && r.Rebuild.ToSeq > 0 {
				line += fmt.Sprintf(": %d%% of the log", 100*r.Rebuild.Seq/r.Rebuild.ToSeq)
			}
			if line != last && !quiet {
				fmt.Fprintln(w, line)
				last = line
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

func formatRuleError(e api.RuleError) string {
	return fmt.Sprintf("%s:%d:%d: %s %s: %s", e.File, e.Line, e.Column, e.Segment, e.Field, e.Message)
}

// splitSegments cuts a rule file into one definition per segment, as
// rule.put takes them.
func splitSegments(name string, data []byte) ([]string, error) {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var out []string
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		n := doc.Content[0]
		items := []*yaml.Node{n}
		switch n.Kind {
		case yaml.SequenceNode:
			items = n.Content
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				switch n.Content[i].Value {
				case "segments":
					items = n.Content[i+1].Content
				case "predicates":
					return nil, fmt.Errorf("%s:%d: named predicates stay in rule files (--rules); apply segments only", name, n.Content[i].Line)
				}
			}
		}
		for _, it := range items {
			b, err := yaml.Marshal(it)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			out = append(out, string(b))
		}
	}
}

func newRuleGetCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use: "get SEGMENT", Short: "A segment's definition, revision, author, time and state", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.GetRule(ctx, args[0])
			}, func(w io.Writer, res any) {
				r := res.(*api.Rule)
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintf(tw, "segment\t%s\nsource\t%s %s\nrevision\t%d\nserving\t%d\nstate\t%s\n", r.Segment, r.Source, r.File, r.Revision, r.Serving, r.State)
				if r.Author != "" || r.Time != "" {
					fmt.Fprintf(tw, "by\t%s at %s\n", r.Author, r.Time)
				}
				tw.Flush()
				fmt.Fprintf(w, "\n%s", r.Definition)
			})
		},
	}
	f.register(cmd)
	return cmd
}

func newRuleListCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "Every segment definition with its source, revision and state", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.ListRules(ctx)
			}, func(w io.Writer, res any) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "SEGMENT\tSOURCE\tREVISION\tSERVING\tSTATE\tAUTHOR")
				for _, r := range res.([]api.Rule) {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", r.Segment, r.Source, r.Revision, r.Serving, r.State, r.Author)
				}
				tw.Flush()
			})
		},
	}
	f.register(cmd)
	return cmd
}

func newRuleRemoveCommand() *cobra.Command {
	var f clientFlags
	var expected int64
	cmd := &cobra.Command{
		Use: "rm SEGMENT", Short: "Delete a segment defined through the API (refused while another segment reads it)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.RuleRequest{Segment: args[0], Author: os.Getenv("USER")}
			if expected >= 0 {
				rev := uint64(expected)
				req.ExpectedRevision = &rev
			}
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.DeleteRule(ctx, req)
			}, func(w io.Writer, res any) {
				r := res.(*api.RuleDeleteReply)
				fmt.Fprintf(w, "%s deleted (revision %d; its history stays)\n", r.Segment, r.Revision)
			})
		},
	}
	f.register(cmd)
	cmd.Flags().Int64Var(&expected, "expected-revision", -1, "refuse unless this is the current revision")
	return cmd
}

func newRuleHistoryCommand() *cobra.Command {
	var f clientFlags
	var limit int
	cmd := &cobra.Command{
		Use: "history SEGMENT", Short: fmt.Sprintf("A segment's revisions with their texts (the last %d are kept)", api.RuleHistoryDepth), Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.RuleHistory(ctx, args[0], limit)
			}, func(w io.Writer, res any) {
				for _, r := range res.(*api.RuleHistoryReply).Revisions {
					if r.Deleted {
						fmt.Fprintf(w, "--- revision %d: deleted at %s\n", r.Revision, r.Time)
						continue
					}
					fmt.Fprintf(w, "--- revision %d by %s at %s\n%s", r.Revision, r.Author, r.Time, r.Definition)
				}
			})
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", 0, "the last N revisions (default all kept)")
	return cmd
}
