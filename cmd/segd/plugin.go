package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// newPluginCommand is `segd plugin`: the plugins admin API (push, ls,
// get, rm).
func newPluginCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "plugin", Short: "Ship, list and remove WASM plugins of a running segd (kept in " + api.PluginsBucket + ")"}
	cmd.AddCommand(newPluginPushCommand(), newPluginListCommand(), newPluginGetCommand(), newPluginRemoveCommand())
	return cmd
}

func newPluginPushCommand() *cobra.Command {
	var f clientFlags
	var manifest, name, author string
	cmd := &cobra.Command{
		Use:   "push NAME.wasm [--manifest FILE]",
		Short: "Install a new version of a plugin without a restart",
		Long: `Send a module to a running segd as the new version of plugin NAME (the
file's name without .wasm, or --name). segd validates, compiles and warms
it before accepting it: a bad module is refused with the reason and the
running version stays. It is stored in ` + api.PluginsBucket + `, and every segment
naming the plugin is rebuilt from the event log and swapped in (serving
its previous membership, marked rebuilding, meanwhile). A module larger
than the server's max payload goes through the Object Store.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(args[0]), ".wasm")
			}
			var man []byte
			if manifest != "" {
				if man, err = os.ReadFile(manifest); err != nil {
					return err
				}
			}
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.PushPlugin(ctx, name, wasm, string(man), author)
			}, func(w io.Writer, res any) {
				r := res.(*api.PluginPutReply)
				fmt.Fprintf(w, "%s: version %s stored (%d bytes)", r.Name, short(r.Version), r.Size)
				if r.Previous != "" {
					fmt.Fprintf(w, ", replacing %s", short(r.Previous))
				}
				fmt.Fprintln(w)
				if len(r.Rebuilding) > 0 {
					fmt.Fprintf(w, "rebuilding from the event log: %s (see segd segment ls)\n", strings.Join(r.Rebuilding, ", "))
				}
			})
		},
	}
	f.register(cmd)
	// Compiling a large module takes longer than a query.
	if fl := cmd.PersistentFlags().Lookup("timeout"); fl != nil {
		_ = fl.Value.Set("60s")
		fl.DefValue = "60s"
	}
	cmd.Flags().StringVar(&manifest, "manifest", "", "the plugin's manifest (YAML or JSON, as NAME.yaml beside NAME.wasm)")
	cmd.Flags().StringVar(&name, "name", "", "plugin name (default: the file's name without .wasm)")
	cmd.Flags().StringVar(&author, "author", os.Getenv("USER"), "author recorded with the version")
	return cmd
}

// short is a version's first 12 hex digits, as segd's log prints it.
func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

func newPluginListCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "Every plugin with its source, version, state and the segments that name it", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.ListPlugins(ctx)
			}, func(w io.Writer, res any) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "PLUGIN\tSOURCE\tVERSION\tSTATE\tSEGMENTS")
				for _, p := range res.([]api.Plugin) {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Source, short(p.Version), p.State, strings.Join(p.Segments, ","))
				}
				tw.Flush()
			})
		},
	}
	f.register(cmd)
	return cmd
}

func newPluginGetCommand() *cobra.Command {
	var f clientFlags
	var version, out string
	cmd := &cobra.Command{
		Use:   "get NAME [--version V [-o FILE]]",
		Short: "A plugin's kept versions, manifest, state and the segments that name it",
		Long: fmt.Sprintf(`Describe a plugin: the version running, the versions kept in %s
(the last %d, newest first, with their sha256 digests), its manifest,
state and the segments that name it. --version V (a digest, or a prefix
of at least 8 digits only it has) describes that version; with -o FILE
its module is written to FILE (checked against its digest).`, api.PluginsBucket, api.PluginVersionsKept),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out != "" && version == "" {
				return errors.New("-o FILE takes --version V: the module of which version?")
			}
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				if version == "" {
					return c.GetPlugin(ctx, args[0])
				}
				p, err := c.GetPluginVersion(ctx, args[0], version)
				if err != nil || out == "" {
					return p, err
				}
				wasm, err := c.ReadPluginVersion(ctx, p.Versions[0])
				if err != nil {
					return nil, err
				}
				return p, os.WriteFile(out, wasm, 0o644)
			}, func(w io.Writer, res any) {
				p := res.(*api.Plugin)
				if version != "" {
					v := p.Versions[0]
					fmt.Fprintf(w, "plugin\t%s\nversion\t%s\nsize\t%d\nby\t%s at %s\nobject\t%s\n", p.Name, v.Version, v.Size, v.Author, v.Time, v.Object)
					if out != "" {
						fmt.Fprintf(w, "written to %s\n", out)
					}
					if v.Manifest != "" {
						fmt.Fprintf(w, "\n%s", v.Manifest)
					}
					return
				}
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintf(tw, "plugin\t%s\nsource\t%s %s\nversion\t%s\nstored\t%s\nabi\t%s\nstate\t%s\n", p.Name, p.Source, p.File, p.Version, p.Stored, p.ABI, p.State)
				if p.LastError != "" {
					fmt.Fprintf(tw, "last error\t%s\n", p.LastError)
				}
				if p.Author != "" || p.Time != "" {
					fmt.Fprintf(tw, "by\t%s at %s\n", p.Author, p.Time)
				}
				fmt.Fprintf(tw, "segments\t%s\n", strings.Join(p.Segments, ", "))
				tw.Flush()
				if len(p.Versions) > 0 {
					fmt.Fprintln(w, "\nVERSION\tSIZE\tAUTHOR\tTIME")
					for _, v := range p.Versions {
						fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", v.Version, v.Size, v.Author, v.Time)
					}
				}
				if p.Manifest != "" {
					fmt.Fprintf(w, "\n%s", p.Manifest)
				}
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&version, "version", "", "a kept version: its sha256 or a prefix of at least 8 digits")
	cmd.Flags().StringVarP(&out, "output", "o", "", "with --version, write its module to FILE")
	return cmd
}

func newPluginRemoveCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use: "rm NAME", Short: "Delete a plugin's module from " + api.PluginsBucket + " (refused while a segment names it)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.DeletePlugin(ctx, args[0], os.Getenv("USER"))
			}, func(w io.Writer, res any) {
				fmt.Fprintf(w, "%s deleted\n", res.(*api.PluginDeleteReply).Name)
			})
		},
	}
	f.register(cmd)
	return cmd
}
