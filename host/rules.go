package host

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

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

// LoadRules reads and compiles rule files; see ReadRuleFiles.
func LoadRules(opts rules.Options, paths ...string) ([]*rules.Segment, error) {
	files, err := ReadRuleFiles(paths...)
	if err != nil {
		return nil, err
	}
	return rules.Compile(files, opts)
}
