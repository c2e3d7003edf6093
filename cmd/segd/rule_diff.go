package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host"
)

// ruleDiff is one segment's difference in `segd rule diff`.
type ruleDiff struct {
	Segment string `json:"segment"`
	// Status: "new" (in the files, not in SEGD_RULES), "changed",
	// "unchanged", "stored_only" (in SEGD_RULES, not in the files: apply
	// leaves it), "file" (defined in a rule file on the server, which a
	// revision applied would shadow), or for two revisions "changed",
	// "unchanged".
	Status string `json:"status"`
	// From and To say what is compared: "SEGD_RULES revision N", a file
	// name, "rule file NAME (server)" or "deleted".
	From         string `json:"from"`
	To           string `json:"to"`
	FromRevision uint64 `json:"from_revision,omitempty"`
	ToRevision   uint64 `json:"to_revision,omitempty"`
	// Diff is every line of the two definitions, prefixed "-" (only in
	// From), "+" (only in To) or " " (both); empty when unchanged.
	Diff string `json:"diff,omitempty"`
}

// ruleDiffReply is `segd rule diff --json`.
type ruleDiffReply struct {
	Segments []ruleDiff `json:"segments"`
	// Differs is whether any segment differs (what --exit-code reports).
	Differs bool `json:"differs"`
}

// errDiffers is --exit-code's status 1.
var errDiffers = errors.New("the definitions differ")

func newRuleDiffCommand() *cobra.Command {
	var f clientFlags
	var paths []string
	var from, to uint64
	var exitCode bool
	cmd := &cobra.Command{
		Use:   "diff -f FILE|DIR | diff SEGMENT [--from R1] [--to R2]",
		Short: "What `rule apply` would change, or how two revisions of a segment differ",
		Long: `With -f, compare each segment of the rule files with its definition in
SEGD_RULES (what "segd rule apply -f" would change): new, changed or
unchanged; the API's segments the files do not define are listed as
stored_only (apply leaves them). Definitions are compared as YAML, so
formatting and comments do not count.

With SEGMENT, compare two of its revisions (segd rule history lists them):
--to defaults to the newest, --from to the revision before --to.

--exit-code exits with status 1 when anything differs.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var diffs *ruleDiffReply
			err := f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				var err error
				switch {
				case len(args) == 1 && len(paths) == 0:
					diffs, err = diffRevisions(ctx, c, args[0], from, to)
				case len(args) == 0 && len(paths) > 0 && from == 0 && to == 0:
					diffs, err = diffFiles(ctx, c, paths)
				default:
					err = errors.New("give -f FILE|DIR, or SEGMENT with --from/--to, not both")
				}
				return diffs, err
			}, func(w io.Writer, res any) { printRuleDiffs(w, res.(*ruleDiffReply)) })
			if err == nil && exitCode && diffs.Differs {
				cmd.SilenceUsage = true
				return errDiffers
			}
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().StringSliceVarP(&paths, "file", "f", nil, "rule file or directory of them (repeatable)")
	cmd.Flags().Uint64Var(&from, "from", 0, "the older revision (default: the one before --to)")
	cmd.Flags().Uint64Var(&to, "to", 0, "the newer revision (default: the newest)")
	cmd.Flags().BoolVar(&exitCode, "exit-code", false, "exit with status 1 when anything differs")
	return cmd
}

// diffFiles compares the segments of rule files with SEGD_RULES.
func diffFiles(ctx context.Context, c *client.Client, paths []string) (*ruleDiffReply, error) {
	files, err := host.ReadRuleFiles(paths...)
	if err != nil {
		return nil, err
	}
	out := &ruleDiffReply{Segments: []ruleDiff{}}
	seen := map[string]bool{}
	for _, file := range files {
		defs, err := splitSegments(file.Name, file.Data)
		if err != nil {
			return nil, err
		}
		for _, def := range defs {
			if def, err = normalDefinition(def); err != nil {
				return nil, fmt.Errorf("%s: %w", file.Name, err)
			}
			id, err := segmentID(def)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file.Name, err)
			}
			if seen[id] {
				return nil, fmt.Errorf("%s: segment %q is defined twice in the files", file.Name, id)
			}
			seen[id] = true
			d := ruleDiff{Segment: id, To: file.Name}
			r, err := c.GetRule(ctx, id)
			switch {
			case client.IsNotFound(err):
				d.Status, d.From, d.Diff = "new", "nothing", lineDiff("", def)
			case err != nil:
				return nil, err
			case r.Source != "api":
				d.Status, d.From, d.Diff = "file", fmt.Sprintf("rule file %s (server)", r.File), lineDiff("", def)
			default:
				stored, err := normalDefinition(r.Definition)
				if err != nil {
					return nil, fmt.Errorf("%s revision %d: %w", id, r.Revision, err)
				}
				d.From, d.FromRevision = fmt.Sprintf("%s revision %d", bus.RulesBucket, r.Revision), r.Revision
				d.Status = "unchanged"
				if stored != def {
					d.Status, d.Diff = "changed", lineDiff(stored, def)
				}
			}
			out.Segments = append(out.Segments, d)
		}
	}
	list, err := c.ListRules(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range list {
		if r.Source == "api" && !seen[r.Segment] {
			out.Segments = append(out.Segments, ruleDiff{Segment: r.Segment, Status: "stored_only",
				From: fmt.Sprintf("%s revision %d", bus.RulesBucket, r.Revision), FromRevision: r.Revision, To: "not in the files"})
		}
	}
	slices.SortFunc(out.Segments, func(a, b ruleDiff) int { return strings.Compare(a.Segment, b.Segment) })
	for _, d := range out.Segments {
		out.Differs = out.Differs || d.Status != "unchanged"
	}
	return out, nil
}

// diffRevisions compares two revisions of a segment from its history.
func diffRevisions(ctx context.Context, c *client.Client, segment string, from, to uint64) (*ruleDiffReply, error) {
	h, err := c.RuleHistory(ctx, segment, 0)
	if err != nil {
		return nil, err
	}
	if len(h.Revisions) == 0 {
		return nil, fmt.Errorf("segment %q has no revisions in %s", segment, bus.RulesBucket)
	}
	find := func(rev uint64) (int, error) {
		i := slices.IndexFunc(h.Revisions, func(r api.RuleRevision) bool { return r.Revision == rev })
		if i < 0 {
			kept := make([]string, len(h.Revisions))
			for j, r := range h.Revisions {
				kept[j] = fmt.Sprint(r.Revision)
			}
			return 0, fmt.Errorf("segment %q has no revision %d (kept: %s; the last %d are kept)", segment, rev, strings.Join(kept, ", "), api.RuleHistoryDepth)
		}
		return i, nil
	}
	ti := len(h.Revisions) - 1
	if to != 0 {
		if ti, err = find(to); err != nil {
			return nil, err
		}
	}
	fi := ti - 1
	if from != 0 {
		if fi, err = find(from); err != nil {
			return nil, err
		}
	}
	if fi < 0 {
		return nil, fmt.Errorf("segment %q: revision %d is its first kept: give --from", segment, h.Revisions[ti].Revision)
	}
	text := func(r api.RuleRevision) (string, string, error) {
		if r.Deleted {
			return "", fmt.Sprintf("revision %d (deleted)", r.Revision), nil
		}
		d, err := normalDefinition(r.Definition)
		return d, fmt.Sprintf("%s revision %d", bus.RulesBucket, r.Revision), err
	}
	a, aName, err := text(h.Revisions[fi])
	if err != nil {
		return nil, err
	}
	b, bName, err := text(h.Revisions[ti])
	if err != nil {
		return nil, err
	}
	d := ruleDiff{Segment: segment, Status: "unchanged", From: aName, To: bName,
		FromRevision: h.Revisions[fi].Revision, ToRevision: h.Revisions[ti].Revision}
	if a != b {
		d.Status, d.Diff = "changed", lineDiff(a, b)
	}
	return &ruleDiffReply{Segments: []ruleDiff{d}, Differs: a != b}, nil
}

// normalDefinition is one segment's definition in block style without
// comments, so that formatting and comments do not count as changes.
func normalDefinition(def string) (string, error) {
	defs, err := splitSegments("definition", []byte(def))
	if err != nil {
		return "", err
	}
	if len(defs) != 1 {
		return "", fmt.Errorf("the definition holds %d segments, not one", len(defs))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(defs[0]), &doc); err != nil {
		return "", err
	}
	var plain func(n *yaml.Node)
	plain = func(n *yaml.Node) {
		// A scalar keeps its tag, so the encoder quotes what needs it.
		n.Style, n.HeadComment, n.LineComment, n.FootComment = 0, "", "", ""
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&doc)
	b, err := yaml.Marshal(&doc)
	return string(b), err
}

// segmentID reads the id of one segment's definition.
func segmentID(def string) (string, error) {
	var s struct {
		ID string `yaml:"id"`
	}
	if err := yaml.Unmarshal([]byte(def), &s); err != nil {
		return "", err
	}
	if s.ID == "" {
		return "", fmt.Errorf("a segment has no id: %q", strings.SplitN(def, "\n", 2)[0])
	}
	return s.ID, nil
}

// maxDiffCells bounds lineDiff's table (lines of a times lines of b):
// past it the whole of a is shown removed and b added.
const maxDiffCells = 4 << 20

// lineDiff lists the lines of a and b, each prefixed "-" (only in a), "+"
// (only in b) or " " (in both), in the order of a longest common
// subsequence of lines.
func lineDiff(a, b string) string {
	al, bl := lines(a), lines(b)
	var sb strings.Builder
	if len(al)*len(bl) > maxDiffCells {
		for _, l := range al {
			sb.WriteString("-" + l + "\n")
		}
		for _, l := range bl {
			sb.WriteString("+" + l + "\n")
		}
		return sb.String()
	}
	// lcs[i][j]: the longest common subsequence of al[i:] and bl[j:].
	lcs := make([][]int32, len(al)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(bl)+1)
	}
	for i := len(al) - 1; i >= 0; i-- {
		for j := len(bl) - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(al) || j < len(bl) {
		switch {
		case i < len(al) && j < len(bl) && al[i] == bl[j]:
			sb.WriteString(" " + al[i] + "\n")
			i, j = i+1, j+1
		case j < len(bl) && (i == len(al) || lcs[i][j+1] > lcs[i+1][j]):
			sb.WriteString("+" + bl[j] + "\n")
			j++
		default:
			sb.WriteString("-" + al[i] + "\n")
			i++
		}
	}
	return sb.String()
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func printRuleDiffs(w io.Writer, r *ruleDiffReply) {
	for _, d := range r.Segments {
		switch d.Status {
		case "unchanged":
			fmt.Fprintf(w, "%s: unchanged (%s, %s)\n", d.Segment, d.From, d.To)
		case "stored_only":
			fmt.Fprintf(w, "%s: only in %s (apply leaves it)\n", d.Segment, d.From)
		default:
			fmt.Fprintf(w, "%s: %s\n--- %s\n+++ %s\n%s", d.Segment, d.Status, d.From, d.To, d.Diff)
		}
	}
}
