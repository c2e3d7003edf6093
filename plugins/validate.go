package plugins

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/segd/segd/plugins/internal/wasmbin"
)

// wasiAllowed lists the wasi_snapshot_preview1 functions a standard Go
// wasip1 module links. The socket calls are left out on purpose.
var wasiAllowed = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`args_get args_sizes_get clock_time_get
		environ_get environ_sizes_get fd_close fd_fdstat_get fd_fdstat_set_flags
		fd_fdstat_set_rights fd_filestat_get fd_filestat_set_size fd_pread
		fd_prestat_dir_name fd_prestat_get fd_pwrite fd_read fd_readdir fd_seek
		fd_sync fd_write path_create_directory path_filestat_get
		path_filestat_set_times path_link path_open path_readlink
		path_remove_directory path_rename path_symlink path_unlink_file
		poll_oneoff proc_exit random_get sched_yield`) {
		wasiAllowed[f] = true
	}
}

const (
	hostModule = "segd"
	wasiModule = "wasi_snapshot_preview1"
)

// requiredExports lists the ABI v1 function exports and their signatures.
var requiredExports = []struct {
	name            string
	params, results []api.ValueType
}{
	{"segd_abi_version", nil, []api.ValueType{api.ValueTypeI32}},
	{"segd_kinds", nil, []api.ValueType{api.ValueTypeI32}},
	{"segd_alloc", []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
	{"segd_init", []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
	{"segd_match", []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
	{"segd_error", nil, []api.ValueType{api.ValueTypeI64}},
}

// optionalExports are the exports a module may leave out (ABI minors).
var optionalExports = []struct {
	name            string
	params, results []api.ValueType
}{
	{"segd_props", nil, []api.ValueType{api.ValueTypeI64}}, // 1.1
	{"_initialize", nil, nil},
}

// ErrInvalid is wrapped by every error that rejects a module at load.
var ErrInvalid = errors.New("invalid plugin module")

// checkHeader rejects bytes that are not a WebAssembly 1.0 binary before
// anything is compiled.
func checkHeader(wasm []byte) error {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		head := wasm[:min(len(wasm), 8)]
		return fmt.Errorf("%w: not a WebAssembly binary (starts with %q, want \"\\x00asm\")", ErrInvalid, head)
	}
	if v := le.Uint32(wasm[4:]); v != 1 {
		return fmt.Errorf("%w: WebAssembly binary version %d, want 1", ErrInvalid, v)
	}
	return nil
}

// scanImports reads the names in the import section without compiling, so
// that a module with a forbidden import is refused at once.
func scanImports(wasm []byte) (imports []string, err error) {
	r := wasmbin.Reader{B: wasm, Off: 8}
	for r.Off < len(r.B) {
		id, body, ok := r.Section()
		if !ok {
			return nil, fmt.Errorf("%w: truncated section %d", ErrInvalid, id)
		}
		if id != 2 { // import section
			continue
		}
		n := body.U32()
		for i := uint32(0); i < n && body.Err == nil; i++ {
			mod, name, kind, _ := body.Import()
			if kind > wasmbin.ImportGlobal {
				return nil, fmt.Errorf("%w: import %s.%s has unknown kind %d", ErrInvalid, mod, name, kind)
			}
			if body.Err != nil {
				break
			}
			imports = append(imports, fmt.Sprintf("%s.%s (%s)", mod, name, kindName(kind)))
		}
		if body.Err != nil {
			return nil, fmt.Errorf("%w: malformed import section", ErrInvalid)
		}
		return imports, nil
	}
	return nil, nil
}

func kindName(k byte) string {
	switch k {
	case 0:
		return "function"
	case 1:
		return "table"
	case 2:
		return "memory"
	case 3:
		return "global"
	}
	return "?"
}

// checkImport reports whether an import ("mod.name (kind)") is allowed.
func checkImport(imp string) error {
	full, kind, _ := strings.Cut(imp, " ")
	mod, name, _ := strings.Cut(full, ".")
	if kind != "(function)" {
		return fmt.Errorf("%w: import %s %s is not allowed: a plugin may import only functions", ErrInvalid, full, kind)
	}
	switch {
	case mod == hostModule && name == "log":
		return nil
	case mod == wasiModule && wasiAllowed[name]:
		return nil
	case mod == wasiModule && strings.HasPrefix(name, "sock_"):
		return fmt.Errorf("%w: import %s is not allowed: plugins have no network", ErrInvalid, full)
	}
	return fmt.Errorf("%w: import %s is not allowed (allowed: %s.log and the WASI preview 1 calls of a Go wasip1 module; see sdk/ABI.md)", ErrInvalid, full, hostModule)
}

// checkExports verifies the ABI exports of a compiled module, naming the
// first missing or mistyped one.
func checkExports(cm wazero.CompiledModule) error {
	if _, ok := cm.ExportedMemories()["memory"]; !ok {
		return fmt.Errorf("%w: missing export \"memory\" (the module's linear memory)", ErrInvalid)
	}
	fns := cm.ExportedFunctions()
	var problems []string
	var missing []string
	for _, want := range requiredExports {
		def, ok := fns[want.name]
		if !ok {
			missing = append(missing, want.name)
			continue
		}
		if !sameTypes(def.ParamTypes(), want.params) || !sameTypes(def.ResultTypes(), want.results) {
			problems = append(problems, fmt.Sprintf("export %s has signature %s, want %s", want.name,
				sig(def.ParamTypes(), def.ResultTypes()), sig(want.params, want.results)))
		}
	}
	for _, opt := range optionalExports {
		if def, ok := fns[opt.name]; ok && (!sameTypes(def.ParamTypes(), opt.params) || !sameTypes(def.ResultTypes(), opt.results)) {
			problems = append(problems, fmt.Sprintf("export %s has signature %s, want %s", opt.name,
				sig(def.ParamTypes(), def.ResultTypes()), sig(opt.params, opt.results)))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		problems = append([]string{fmt.Sprintf("missing export(s) %s", strings.Join(missing, ", "))}, problems...)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s (ABI v%d, see sdk/ABI.md)", ErrInvalid, strings.Join(problems, "; "), abiMajor)
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sig(p, r []api.ValueType) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ", ")
	}
	return "(" + names(p) + ") -> (" + names(r) + ")"
}
