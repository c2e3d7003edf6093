package wasmbin

import (
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

var header = []byte{0, 'a', 's', 'm', 1, 0, 0, 0}

// module assembles sections given as id followed by the body.
func module(secs ...[]byte) []byte {
	b := bytes.Clone(header)
	for _, s := range secs {
		b = append(b, s[0])
		b = binary.AppendUvarint(b, uint64(len(s)-1))
		b = append(b, s[1:]...)
	}
	return b
}

func u32(v uint32) []byte { return binary.AppendUvarint(nil, uint64(v)) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestHostileCounts: modules of a few bytes that declare huge vectors are
// refused, naming the section, without allocating for what they declare.
func TestHostileCounts(t *testing.T) {
	t.Parallel()
	typeAndFunc := [][]byte{{1, 1, 0x60, 0, 0}, {3, 1, 0}}
	for _, c := range []struct {
		name, want string
		mod        []byte
	}{
		{"data segments", "data section", module(cat([]byte{11}, u32(1<<32-1), []byte{0}))},
		{"data bytes", "bytes of data", module(cat([]byte{11}, u32(1), []byte{1}, u32(1<<31)))},
		{"functions", "function section", module(cat([]byte{3}, u32(1<<28), []byte{0}))},
		{"types", "types exceed", module(cat([]byte{1}, u32(2_000_000)))},
		{"locals", "locals exceed", module(typeAndFunc[0], typeAndFunc[1],
			cat([]byte{10}, u32(1), u32(7), u32(1), u32(1<<30), []byte{0x7f, 0x0b}))},
		{"element vector", "element segment 0", module(cat([]byte{9}, u32(1), []byte{1, 0}, u32(1<<30)))},
		{"table size", "exceeds the limit", module(cat([]byte{4}, u32(1), []byte{0x70, 0}, u32(1<<31)))},
		{"name map", "name subsection 1", module(cat([]byte{0}, u32(4), []byte("name"), []byte{1}, u32(5), u32(1<<30)))},
		{"local names", "name subsection 2", module(cat([]byte{0}, u32(4), []byte("name"), []byte{2}, u32(7), u32(1), u32(0), u32(1<<30)))},
		{"truncated", "runs past the end", append(bytes.Clone(header), 1, 100, 0)},
		{"unknown section", "unknown section id 42", module([]byte{42})},
	} {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		err := CheckLimits(c.mod)
		runtime.ReadMemStats(&m1)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", c.name, err, c.want)
		}
		if grew := m1.TotalAlloc - m0.TotalAlloc; grew > 1<<20 {
			t.Errorf("%s: checking allocated %d bytes", c.name, grew)
		}
	}
}

// TestWellFormedModules: modules within the limits pass, including every
// element form and a name section.
func TestWellFormedModules(t *testing.T) {
	t.Parallel()
	ok := module(
		[]byte{1, 1, 0x60, 0, 0},
		cat([]byte{2}, u32(1), u32(3), []byte("env"), u32(1), []byte("f"), []byte{0, 0}),
		[]byte{3, 1, 0},
		cat([]byte{4}, u32(1), []byte{0x70, 1}, u32(2), u32(10)),
		cat([]byte{5}, u32(1), []byte{0}, u32(1)),
		cat([]byte{6}, u32(1), []byte{0x7f, 0, 0x41, 0, 0x0b}),
		cat([]byte{7}, u32(1), u32(1), []byte("g"), []byte{0}, u32(1)),
		cat([]byte{9}, u32(2), []byte{0, 0x41, 0, 0x0b}, u32(1), u32(1), []byte{7, 0x70}, u32(1), []byte{0xd2, 1, 0x0b}),
		cat([]byte{10}, u32(1), u32(4), u32(1), u32(3), []byte{0x7f, 0x0b}),
		cat([]byte{11}, u32(2), []byte{0, 0x41, 0, 0x0b}, u32(2), []byte("hi"), []byte{1}, u32(0)),
		cat([]byte{0}, u32(4), []byte("name"), []byte{1}, u32(4), u32(1), u32(1), u32(1), []byte("f")),
	)
	if err := CheckLimits(ok); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	if _, err := rt.CompileModule(ctx, ok); err != nil {
		t.Fatalf("the fixture is not a valid module: %v", err)
	}
}
