package wasmbin

import (
	"errors"
	"fmt"
)

// Implementation limits, those of the WebAssembly JavaScript API that
// browsers enforce (https://webassembly.github.io/spec/js-api/#limits).
const (
	MaxTypes           = 1_000_000
	MaxFunctions       = 1_000_000
	MaxImports         = 100_000
	MaxExports         = 100_000
	MaxGlobals         = 1_000_000
	MaxDataSegments    = 100_000
	MaxTables          = 100_000
	MaxElementSegments = 10_000_000
	MaxTableSize       = 10_000_000
	MaxBodySize        = 7_654_321
	MaxLocals          = 50_000
	MaxParams          = 1_000
	MaxResults         = 1_000
)

var sectionNames = map[byte]string{0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory",
	6: "global", 7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "data count", 13: "tag"}

// CheckLimits walks a module's sections and checks every count and length
// it declares (vector lengths, locals, table sizes, data and name lengths)
// against the bytes that follow and against the implementation limits,
// without allocating for them. Decoders allocate by declared counts before
// they read the items (wazero v1.12 does for data segments, functions,
// locals, element and name vectors), so a 16-byte module declaring four
// billion data segments would otherwise take the host down with it. The
// error names the section and the offset.
func CheckLimits(module []byte) error {
	if len(module) < 8 {
		return errors.New("not a WebAssembly module: shorter than its 8-byte header")
	}
	r := Reader{B: module, Off: 8}
	for r.Off < len(r.B) {
		start := r.Off
		id, body, ok := r.Section()
		if !ok {
			return fmt.Errorf("section at offset %#x runs past the end of the module", start)
		}
		name := sectionNames[id]
		if name == "" {
			return fmt.Errorf("unknown section id %d at offset %#x", id, start)
		}
		if err := checkSection(id, &body); err != nil {
			return fmt.Errorf("%s section at offset %#x: %w", name, start, err)
		}
		if body.Err != nil {
			return fmt.Errorf("%s section at offset %#x: malformed: %w", name, start, body.Err)
		}
	}
	return nil
}

// count reads a vector length and checks it against max and the bytes
// left (every item takes at least one byte).
func count(r *Reader, what string, max int) (int, error) {
	n := r.U32()
	if r.Err != nil {
		return 0, r.Err
	}
	if int64(n) > int64(max) {
		return 0, fmt.Errorf("%d %s exceed the limit of %d", n, what, max)
	}
	if int(n) > r.Left() {
		return 0, fmt.Errorf("%d %s declared in %d bytes", n, what, r.Left())
	}
	return int(n), nil
}

func checkSection(id byte, r *Reader) error {
	switch id {
	case 0:
		return checkCustom(r)
	case 1:
		n, err := count(r, "types", MaxTypes)
		for i := 0; i < n && err == nil && r.Err == nil; i++ {
			if form := r.Byte(); form != 0x60 {
				return fmt.Errorf("type %d: form %#x is not a function type", i, form)
			}
			var p, q int
			if p, err = count(r, "parameters", MaxParams); err == nil {
				r.Skip(p)
				if q, err = count(r, "results", MaxResults); err == nil {
					r.Skip(q)
				}
			}
		}
		return err
	case 2:
		n, err := count(r, "imports", MaxImports)
		for i := 0; i < n && err == nil && r.Err == nil; i++ {
			if _, _, kind, min := r.Import(); kind == ImportTable && min > MaxTableSize {
				err = fmt.Errorf("a table of %d entries exceeds the limit of %d", min, MaxTableSize)
			}
		}
		return err
	case 3:
		_, err := count(r, "functions", MaxFunctions)
		return err
	case 4:
		n, err := count(r, "tables", MaxTables)
		for i := 0; i < n && err == nil && r.Err == nil; i++ {
			if t := r.Byte(); t == 0x40 {
				return fmt.Errorf("table %d: tables with an initializer are not supported", i)
			}
			err = tableLimits(r)
		}
		return err
	case 5:
		n, err := count(r, "memories", 1)
		for i := 0; i < n && err == nil; i++ {
			r.Limits()
		}
		return err
	case 6:
		_, err := count(r, "globals", MaxGlobals)
		return err // the items hold no lengths a decoder allocates for
	case 7:
		n, err := count(r, "exports", MaxExports)
		for i := 0; i < n && err == nil && r.Err == nil; i++ {
			r.Name()
			r.Byte()
			r.U32()
		}
		return err
	case 9:
		return checkElements(r)
	case 10:
		n, err := count(r, "function bodies", MaxFunctions)
		for i := 0; i < n && err == nil && r.Err == nil; i++ {
			size := r.U32()
			if r.Err != nil || size > MaxBodySize || int(size) > r.Left() {
				return fmt.Errorf("function body %d: %d bytes: over the limit of %d or past the section", i, size, MaxBodySize)
			}
			b := Reader{B: r.B[r.Off : r.Off+int(size)]}
			r.Off += int(size)
			groups, err := count(&b, "local declarations", MaxLocals)
			if err != nil {
				return fmt.Errorf("function body %d: %w", i, err)
			}
			locals := 0
			for range groups {
				locals += int(b.U32())
				b.Byte()
				if b.Err != nil || locals > MaxLocals {
					return fmt.Errorf("function body %d: %d or more locals exceed the limit of %d", i, locals, MaxLocals)
				}
			}
		}
		return err
	case 11:
		n, err := count(r, "data segments", MaxDataSegments)
		for i := 0; i < n && err == nil && r.Err == nil; i++ {
			switch flags := r.U32(); flags {
			case 0:
				err = constExpr(r)
			case 1:
			case 2:
				r.U32()
				err = constExpr(r)
			default:
				return fmt.Errorf("data segment %d: unknown form %d", i, flags)
			}
			if err == nil {
				var l int
				if l, err = count(r, "bytes of data", 1<<31-1); err == nil {
					r.Skip(l)
				}
			}
		}
		return err
	case 12:
		if n := r.U32(); n > MaxDataSegments {
			return fmt.Errorf("%d data segments exceed the limit of %d", n, MaxDataSegments)
		}
	case 13:
		_, err := count(r, "tags", MaxTypes)
		return err
	}
	return nil
}

func tableLimits(r *Reader) error {
	if min, _, _ := r.Limits(); min > MaxTableSize {
		return fmt.Errorf("a table of %d entries exceeds the limit of %d", min, MaxTableSize)
	}
	return nil
}

// checkElements checks the vectors of every element segment (all eight
// forms).
func checkElements(r *Reader) error {
	n, err := count(r, "element segments", MaxElementSegments)
	for i := 0; i < n && err == nil && r.Err == nil; i++ {
		flags := r.U32()
		if flags > 7 {
			return fmt.Errorf("element segment %d: unknown form %d", i, flags)
		}
		if flags&3 == 2 {
			r.U32() // table index
		}
		if flags&1 == 0 {
			if err = constExpr(r); err != nil {
				return fmt.Errorf("element segment %d: %w", i, err)
			}
		}
		if flags&3 != 0 {
			r.Byte() // element kind or reference type
		}
		var k int
		if k, err = count(r, "elements", MaxTableSize); err != nil {
			return fmt.Errorf("element segment %d: %w", i, err)
		}
		for j := 0; j < k && r.Err == nil; j++ {
			if flags&4 == 0 {
				r.U32()
			} else if err = constExpr(r); err != nil {
				return fmt.Errorf("element segment %d: %w", i, err)
			}
		}
	}
	return err
}

// constExpr moves past a constant expression.
func constExpr(r *Reader) error {
	for r.Err == nil {
		switch op := r.Byte(); op {
		case 0x0b:
			return nil
		case 0x41, 0x42:
			r.S64()
		case 0x43:
			r.Skip(4)
		case 0x44:
			r.Skip(8)
		case 0x23, 0xd2:
			r.U32()
		case 0xd0:
			r.Byte()
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant arithmetic
		case 0xfd:
			if r.U32() != 12 {
				return errors.New("a SIMD instruction other than v128.const in a constant expression")
			}
			r.Skip(16)
		default:
			return fmt.Errorf("opcode %#x in a constant expression", op)
		}
	}
	return r.Err
}

// checkCustom checks the name maps of a "name" section; other custom
// sections are opaque bytes.
func checkCustom(r *Reader) error {
	if r.Name() != "name" || r.Err != nil {
		r.Err = nil
		return nil
	}
	for r.Left() > 0 && r.Err == nil {
		id, sub, ok := r.Section()
		if !ok {
			return errors.New("name subsection runs past the section")
		}
		if id == 0 {
			continue // the module's name
		}
		n, err := count(&sub, "names", MaxFunctions)
		for i := 0; i < n && err == nil && sub.Err == nil; i++ {
			sub.U32()
			if id == 2 || id == 3 { // indirect: function -> (local or label -> name)
				var k int
				if k, err = count(&sub, "names", MaxFunctions); err == nil {
					for j := 0; j < k && sub.Err == nil; j++ {
						sub.U32()
						sub.Name()
					}
				}
				continue
			}
			sub.Name()
		}
		if err != nil {
			return fmt.Errorf("name subsection %d: %w", id, err)
		}
		if sub.Err != nil {
			return fmt.Errorf("name subsection %d: %w", id, sub.Err)
		}
	}
	return nil
}
