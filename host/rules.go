package host

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/segd/segd/plugins"
	"github.com/segd/segd/rules"
)

// ReadRuleFiles reads rule files: each path is a YAML file, or a directory
// whose *.yaml and *.yml files are read in name order.
func ReadRuleFiles(paths ...string) ([]rules.File, error) {
	var files []rules.File
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		names := []string{p}
		if st.IsDir() {
			names = nil
			for _, pattern := range []string{"*.yaml", "*.yml"} {
				m, err := filepath.Glob(filepath.Join(p, pattern))
				if err != nil {
					return nil, fmt.Errorf("rules: %w", err)
				}
				names = append(names, m...)
			}
			sort.Strings(names)
			if len(names) == 0 {
				return nil, fmt.Errorf("rules: %s holds no *.yaml or *.yml file", p)
			}
		}
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				return nil, fmt.Errorf("rules: %w", err)
			}
			files = append(files, rules.File{Name: n, Data: data})
		}
	}
	return files, nil
}

// LoadRules reads and compiles rule files' segments; see ReadRuleFiles.
func LoadRules(opts rules.Options, paths ...string) ([]*rules.Segment, error) {
	set, err := LoadRuleSet(opts, paths...)
	if err != nil {
		return nil, err
	}
	return set.Segments, nil
}

// LoadRuleSet reads and compiles rule files: segments and named
// predicates.
func LoadRuleSet(opts rules.Options, paths ...string) (*rules.RuleSet, error) {
	files, err := ReadRuleFiles(paths...)
	if err != nil {
		return nil, err
	}
	return rules.CompileSet(files, opts)
}

// LoadPlugins loads the WASM plugins of dir, compiling them once into a
// cache under dataDir. A plugin that cannot load is an error naming its
// file: a rule that names it could not work. wazeroInterrupts is
// plugins.Options.WazeroInterrupts.
func LoadPlugins(ctx context.Context, dir, dataDir string, logger *slog.Logger, wazeroInterrupts bool) (*plugins.Registry, error) {
	reg, err := plugins.LoadDir(ctx, dir, plugins.Options{CacheDir: filepath.Join(dataDir, "wasm-cache"), Logger: logger,
		WazeroInterrupts: wazeroInterrupts})
	if err != nil {
		if reg != nil {
			_ = reg.Close(ctx)
		}
		return nil, fmt.Errorf("plugins: %w", err)
	}
	return reg, nil
}

// LoadSchema reads an event schema file.
func LoadSchema(path string) (*rules.Schema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return rules.ParseSchema(path, data)
}
