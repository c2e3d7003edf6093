package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/bus/natsconn"
)

func newSegmentGetCommand(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "get SEGMENT",
		Short: "A segment's definition, status, size and last change",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.Segment(ctx, args[0])
			}, func(w io.Writer, res any) {
				r := res.(*api.SegmentGetReply)
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				status := r.Status
				if r.Error != "" {
					status += ": " + r.Error
				}
				updated := r.Updated
				if updated == "" {
					updated = "never"
				}
				fmt.Fprintf(tw, "segment\t%s\nkind\t%s\nstatus\t%s\nsize\t%d\nupdated\t%s\n", r.ID, r.Kind, status, r.Size, updated)
				if r.Description != "" {
					fmt.Fprintf(tw, "description\t%s\n", r.Description)
				}
				if r.EvalErrors > 0 {
					fmt.Fprintf(tw, "not judged\t%d (%s)\n", r.EvalErrors, r.LastEvalError)
				}
				tw.Flush()
				fmt.Fprintf(w, "\n%s", r.Definition)
			})
		},
	}
}

func newSegmentMembersCommand(f *clientFlags) *cobra.Command {
	var cursor string
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:   "members SEGMENT",
		Short: "A page of SEGMENT's members (--all for every page)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all {
				return f.withClient(cmd, 0, func(ctx context.Context, c *client.Client) error {
					out := bufio.NewWriter(cmd.OutOrStdout())
					defer out.Flush()
					return c.EachMember(ctx, args[0], limit, func(users []string) error {
						for _, u := range users {
							fmt.Fprintln(out, u)
						}
						return nil
					})
				})
			}
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.Members(ctx, args[0], cursor, limit)
			}, func(w io.Writer, res any) {
				r := res.(*api.SegmentMembersReply)
				for _, u := range r.Users {
					fmt.Fprintln(w, u)
				}
				if r.Next != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "more: --cursor %s\n", r.Next)
				}
			})
		},
	}
	cmd.Flags().StringVar(&cursor, "cursor", "", "where to start: the cursor printed after the previous page")
	cmd.Flags().IntVar(&limit, "limit", 0, "users per page (default 1000, at most 10000)")
	cmd.Flags().BoolVar(&all, "all", false, "every member, one per line, page after page")
	return cmd
}

func newSegmentExportCommand(f *clientFlags) *cobra.Command {
	var format, output string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "export SEGMENT",
		Short: "A whole segment: ids one per line, or a roaring bitmap (--format roaring)",
		Long: `Export a whole segment. Large exports travel through the JetStream Object
Store (bucket SEGD_EXPORTS) and show a progress bar on stderr when it is a
terminal. The roaring
format is the portable serialization of segd's dense user ids; write it to a
file with -o.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withClient(cmd, 10*time.Minute, func(ctx context.Context, c *client.Client) error {
				var bar *progressbar.ProgressBar
				opt := client.WithProgress(func(done, total uint64) {
					if quiet {
						return
					}
					if bar == nil {
						// On stderr, and only on a terminal: stdout may
						// be the export itself, and a log is no place
						// for a bar.
						if bar = newBytesBar(cmd.ErrOrStderr(), int64(total), "fetching "+args[0]); bar == nil {
							quiet = true
							return
						}
					}
					_ = bar.Set64(int64(done))
				})
				ex, err := c.Export(ctx, args[0], format, opt)
				if bar != nil {
					_ = bar.Finish()
				}
				if err != nil {
					return err
				}
				var w io.Writer = cmd.OutOrStdout()
				if output != "" && output != "-" {
					file, err := os.Create(output)
					if err != nil {
						return err
					}
					defer file.Close()
					w = file
				}
				bw := bufio.NewWriter(w)
				switch {
				case f.json:
					fmt.Fprintf(bw, `{"segment":%q,"format":%q,"count":%d,`, ex.Segment, ex.Format, ex.Count)
					if ex.Format == api.FormatRoaring {
						fmt.Fprintf(bw, `"roaring":%q}`+"\n", base64.StdEncoding.EncodeToString(ex.Roaring))
					} else {
						fmt.Fprintf(bw, `"users":[%s]}`+"\n", quoteAll(ex.Users))
					}
				case ex.Format == api.FormatRoaring:
					if output == "" && isTerminal(cmd.OutOrStdout()) {
						return errors.New("a roaring bitmap is binary: write it to a file with -o FILE (or pipe it)")
					}
					_, _ = bw.Write(ex.Roaring)
				default:
					for _, u := range ex.Users {
						bw.WriteString(u)
						bw.WriteByte('\n')
					}
				}
				if err := bw.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d users exported from %s\n", ex.Count, ex.Segment)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", api.FormatIDs, "ids or roaring")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

func quoteAll(users []string) string {
	var b strings.Builder
	for i, u := range users {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q", u)
	}
	return b.String()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newSegmentQueryCommand(f *clientFlags) *cobra.Command {
	var count bool
	var limit int
	cmd := &cobra.Command{
		Use:   "query EXPR",
		Short: `Set algebra over segments, e.g. "vip & !churned | new_7d"`,
		Long: `Evaluate set algebra over segments. Operators, tightest first:
  !  not (every user segd has seen who is not in the operand)
  &  and
  -  and not (put spaces around it: segment ids may contain '-')
  |  or
and parentheses. Prints the count and up to --limit users.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.Query(ctx, args[0], count, limit)
			}, func(w io.Writer, res any) {
				r := res.(*api.SegmentQueryReply)
				for _, u := range r.Users {
					fmt.Fprintln(w, u)
				}
				more := ""
				if r.Truncated {
					more = fmt.Sprintf(" (%d shown; --limit for more, segment export for all)", len(r.Users))
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d users%s\n", r.Count, more)
			})
			var ce *client.Error
			if errors.As(err, &ce) && ce.Field == "expr" {
				if col := queryColumn(ce.Description); col > 0 {
					return fmt.Errorf("%s\n | %s\n | %s^", ce.Description, args[0], strings.Repeat(".", col-1))
				}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&count, "count", false, "print only the count")
	cmd.Flags().IntVar(&limit, "limit", 0, "users to print (default 1000, at most 10000)")
	return cmd
}

// queryColumn finds "column N" in a query error.
func queryColumn(desc string) int {
	_, rest, ok := strings.Cut(desc, "column ")
	if !ok {
		return 0
	}
	var col int
	fmt.Sscanf(rest, "%d", &col)
	return col
}

func newSegmentHistoryCommand(f *clientFlags) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "history SEGMENT",
		Short: "SEGMENT's size, entries and exits per day (default the last 30 days)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.HistoryReply(ctx, args[0], from, to)
			}, func(w io.Writer, res any) {
				r := res.(*api.SegmentHistoryReply)
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
				fmt.Fprintln(tw, "DAY\tSIZE\tENTERED\tLEFT\t")
				for _, d := range r.Days {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", d.Day, d.Size, d.Entered, d.Left)
				}
				tw.Flush()
				if note := historyNote(r.HistoryStart, r.Days); note != "" {
					fmt.Fprintln(w, note)
				}
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first day, YYYY-MM-DD (default 29 days before --to)")
	cmd.Flags().StringVar(&to, "to", "", "last day, YYYY-MM-DD (default today)")
	return cmd
}

func newSegmentPreviewCommand(f *clientFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "preview FILE",
		Short: "What a segment that is not saved would hold now (FILE: one segment as in a rules file; - reads stdin)",
		Long: `Compile the segment in FILE beside segd's rules and evaluate it over the
retained event log, without saving it: its size and first members. It may
read saved segments (in_segment). Items its predicates could not judge
(counted as non-matches) are reported. Replaying the log takes time: segd
stops a preview after 2 minutes, and this command waits that long unless
--timeout says otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var def []byte
			var err error
			if args[0] == "-" {
				def, err = io.ReadAll(cmd.InOrStdin())
			} else {
				def, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("timeout") {
				// Wait for segd's own answer, a 503 past its limit, rather
				// than give up first while the preview goes on.
				f.timeout = bus.PreviewTimeLimit + 10*time.Second
			}
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.Preview(ctx, string(def), limit)
			}, func(w io.Writer, res any) {
				r := res.(*api.SegmentPreviewReply)
				fmt.Fprintf(w, "%s (%s): %d users, over %d messages up to stream sequence %d, in %dms\n",
					r.ID, r.Kind, r.Size, r.Messages, r.Seq, r.TookMs)
				if r.EvalErrors > 0 {
					items := "items"
					if r.EvalErrors == 1 {
						items = "item"
					}
					fmt.Fprintf(w, "warning: %d %s could not be judged (counted as non-matches); the last: %s\n", r.EvalErrors, items, r.LastEvalError)
				}
				if r.Error != "" {
					fmt.Fprintf(w, "warning: %s\n", r.Error)
				}
				for _, u := range r.Users {
					fmt.Fprintln(w, u)
				}
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "members to list")
	return cmd
}

// uploadTimeout is the default --timeout of segment upload: a million ids
// take several messages, each stored and applied in turn.
const uploadTimeout = 2 * time.Minute

func newSegmentUploadCommand(f *clientFlags) *cobra.Command {
	var file string
	var appendMode, allowEmpty bool
	cmd := &cobra.Command{
		Use:   "upload SEGMENT [USER...]",
		Short: "Set the members of a static segment (--append to add), from arguments or a file of ids",
		Long: `Upload the members of a static segment (static: true in its rule file): the
users given as arguments or, with --file, one per line (- for stdin). The
default replaces the members; --append adds to them. A replace with no users
would empty the segment: it is refused unless --allow-empty says so.

segd stores the upload in its event log, so it survives restarts, and
replies with the size once applied. An upload still being applied when the
wait ends (--timeout, default 2m here) is reported as stored and being
applied, with its stream sequence: it is not lost and need not be sent again.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			users := args[1:]
			if file != "" {
				more, err := readIDs(file, cmd.InOrStdin())
				if err != nil {
					return err
				}
				users = append(users, more...)
			}
			if len(users) == 0 && appendMode {
				return errors.New("no users to append: give them as arguments or with --file")
			}
			if len(users) == 0 && !allowEmpty {
				return fmt.Errorf("no users given: a replace with no users would empty %s; give users as arguments or with --file, or pass --allow-empty to empty it", args[0])
			}
			mode := api.UploadReplace
			if appendMode {
				mode = api.UploadAppend
			}
			timeout := f.timeout
			if fl := cmd.Flag("timeout"); fl == nil || !fl.Changed {
				timeout = uploadTimeout
			}
			var opts []client.UploadOption
			if allowEmpty {
				opts = append(opts, client.AllowEmpty())
			}
			return f.withClient(cmd, timeout, func(ctx context.Context, c *client.Client) error {
				stop := showElapsed(cmd.ErrOrStderr(), fmt.Sprintf("uploading %d users to %s", len(users), args[0]))
				r, err := c.Upload(ctx, args[0], users, mode, opts...)
				stop()
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if f.json {
					enc := json.NewEncoder(w)
					enc.SetIndent("", "  ")
					return enc.Encode(r)
				}
				if !r.Applied {
					fmt.Fprintf(w, "%s: the %s of %d users is stored (events stream sequence %d) and segd is applying it; it is not lost and need not be sent again (segd segment get %s shows the size once applied)\n",
						r.Segment, mode, len(users), r.Seq, r.Segment)
					return nil
				}
				fmt.Fprintf(w, "%s now has %d members (%s of %d users)\n", r.Segment, r.Size, mode, len(users))
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "read user ids from this file, one per line (- for stdin)")
	cmd.Flags().BoolVar(&appendMode, "append", false, "add the users instead of replacing the members")
	cmd.Flags().BoolVar(&allowEmpty, "allow-empty", false, "let a replace with no users empty the segment")
	return cmd
}

func readIDs(path string, stdin io.Reader) ([]string, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if u := strings.TrimSpace(sc.Text()); u != "" {
			out = append(out, u)
		}
	}
	return out, sc.Err()
}

// withClient connects and runs fn with a client whose requests may take up
// to timeout (0: --timeout).
func (f *clientFlags) withClient(cmd *cobra.Command, timeout time.Duration, fn func(context.Context, *client.Client) error) error {
	nc, err := f.connect("segd-cli")
	if err != nil {
		return err
	}
	defer nc.Close()
	if timeout == 0 {
		timeout = f.timeout
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	return natsconn.Refused(nc, fn(ctx, client.New(nc, client.WithTimeout(timeout))))
}

// historyNote says from which day the history is recorded when the days
// shown begin before it: their 0 means "not recorded", not "empty".
func historyNote(start string, days []api.HistoryDay) string {
	switch {
	case start == "":
		return "no history recorded yet: segd records a segment's size per day as it applies changes to it"
	case len(days) > 0 && days[0].Day < start:
		return fmt.Sprintf("history recorded since %s: the days before it show 0 because nothing was recorded (a first start over an existing log replays it all on one day)", start)
	}
	return ""
}
