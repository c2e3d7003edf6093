// Package preempt rewrites a WebAssembly module so that its host can stop
// it: every function entry and every loop header gets a check of a new
// exported mutable i32 global, and a non-zero value traps (unreachable).
//
// WebAssembly has no preemption, and wazero v1.12's own way to stop a
// runaway guest (WithCloseOnContextDone) calls out of compiled code into Go
// at every loop header, which makes a Go guest 3–5x slower. The check
// inserted here is a load and a branch that is never taken, so a deadline
// costs the guest a few percent instead: the host sets the global from a
// timer, and the guest traps at its next loop iteration or call.
//
// Every loop and every recursion passes through a check, so a guest cannot
// run for long without seeing the flag; straight-line code between checks is
// bounded by the size of the module. A module with a start section is
// refused: its start function runs inside instantiation, before the host
// holds the flag.
//
// The rewrite decodes the immediates of every instruction in the core
// specification (with sign extension, saturating conversions, bulk memory,
// reference types, SIMD, tail calls and threads) and refuses anything else
// with an error naming the function and offset: the caller falls back to a
// slower way to interrupt. Branch targets in WebAssembly are label depths,
// not offsets, so inserting a closed if block moves no branch. DWARF custom
// sections, whose code offsets would be wrong afterwards, are dropped.
package preempt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Section ids of the binary format.
const (
	secCustom = 0
	secImport = 2
	secGlobal = 6
	secExport = 7
	secStart  = 8
	secCode   = 10
)

// order gives each known section id its place in a module (the tag section
// sits between memory and global; data count between element and code).
var order = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

var header = []byte{0, 'a', 's', 'm', 1, 0, 0, 0}

// Instrument returns a copy of module with an exported mutable i32 global
// named export, initially 0, checked at every function entry and loop
// header: when it is not 0, the guest executes unreachable. module is not
// modified. The result still has to be validated (compiling it does that).
func Instrument(module []byte, export string) ([]byte, error) {
	if len(module) < len(header) || !bytes.Equal(module[:len(header)], header) {
		return nil, errors.New("preempt: not a WebAssembly 1.0 binary module")
	}
	var (
		secs          []section
		globalImports uint32
		globals       = -1 // index in secs of the global section
		exports       = -1
	)
	r := reader{b: module, off: len(header)}
	for r.off < len(r.b) {
		start := r.off
		id := r.byte()
		size := r.u32()
		if r.err != nil || uint64(r.off)+uint64(size) > uint64(len(r.b)) {
			return nil, fmt.Errorf("preempt: section at offset %#x runs past the end of the module", start)
		}
		s := section{id: id, body: r.b[r.off : r.off+int(size)], off: r.off}
		r.off += int(size)
		if id == secCustom && isDebug(s.body) {
			continue
		}
		if id != secCustom {
			if _, ok := order[id]; !ok {
				return nil, fmt.Errorf("preempt: unknown section id %d at offset %#x", id, start)
			}
		}
		switch id {
		case secStart:
			return nil, errors.New("preempt: the module has a start section, which runs while it is instantiated, before a host can set its flag; export an _initialize function instead")
		case secImport:
			n, err := countGlobalImports(s)
			if err != nil {
				return nil, err
			}
			globalImports = n
		case secGlobal:
			globals = len(secs)
		case secExport:
			exports = len(secs)
		}
		secs = append(secs, s)
	}

	// The new global: its index follows the imported and defined globals.
	index := globalImports
	newGlobal := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b} // (mut i32) (i32.const 0)
	if globals >= 0 {
		s := &secs[globals]
		g := reader{b: s.body}
		n := g.u32()
		if g.err != nil {
			return nil, fmt.Errorf("preempt: global section at offset %#x: bad count", s.off)
		}
		index += n
		s.body = append(appendU32(nil, n+1), append(bytes.Clone(g.rest()), newGlobal...)...)
	} else {
		secs = insertSection(secs, section{id: secGlobal, body: append(appendU32(nil, 1), newGlobal...)})
	}
	newExport := appendName(nil, export)
	newExport = append(newExport, 0x03) // global
	newExport = appendU32(newExport, index)
	if exports >= 0 {
		// insertSection may have moved it.
		for i := range secs {
			if secs[i].id == secExport {
				exports = i
			}
		}
		s := &secs[exports]
		n, err := checkExportName(*s, export)
		if err != nil {
			return nil, err
		}
		e := reader{b: s.body}
		e.u32()
		s.body = append(appendU32(nil, n+1), append(bytes.Clone(e.rest()), newExport...)...)
	} else {
		secs = insertSection(secs, section{id: secExport, body: append(appendU32(nil, 1), newExport...)})
	}

	check := []byte{0x23} // global.get index; if; unreachable; end
	check = appendU32(check, index)
	check = append(check, 0x04, 0x40, 0x00, 0x0b)
	for i := range secs {
		if secs[i].id == secCode {
			body, err := instrumentCode(secs[i], check)
			if err != nil {
				return nil, err
			}
			secs[i].body = body
		}
	}

	out := make([]byte, 0, len(module)+len(module)/8)
	out = append(out, header...)
	for _, s := range secs {
		out = append(out, s.id)
		out = appendU32(out, uint32(len(s.body)))
		out = append(out, s.body...)
	}
	return out, nil
}

// section is one section of the module; off is where its body starts in
// the input (for errors).
type section struct {
	id   byte
	body []byte
	off  int
}

// isDebug reports whether a custom section body is DWARF (.debug_*).
func isDebug(body []byte) bool {
	r := reader{b: body}
	name := r.name()
	return r.err == nil && strings.HasPrefix(name, ".debug_")
}

// insertSection puts s before the first section that must follow it.
func insertSection(secs []section, s section) []section {
	at := len(secs)
	for i, x := range secs {
		if x.id != secCustom && order[x.id] > order[s.id] {
			at = i
			break
		}
	}
	return append(secs[:at], append([]section{s}, secs[at:]...)...)
}

// countGlobalImports counts the imported globals, which come before the
// defined ones in the global index space.
func countGlobalImports(s section) (uint32, error) {
	r := reader{b: s.body}
	n := r.u32()
	var globals uint32
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0x00: // function: type index
			r.u32()
		case 0x01: // table: reference type, limits
			r.byte()
			r.limits()
		case 0x02: // memory: limits
			r.limits()
		case 0x03: // global: value type, mutability
			r.byte()
			r.byte()
			globals++
		case 0x04: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			return 0, fmt.Errorf("preempt: import %d: unknown kind %#x", i, kind)
		}
	}
	if r.err != nil {
		return 0, fmt.Errorf("preempt: import section at offset %#x: %v", s.off, r.err)
	}
	return globals, nil
}

// checkExportName returns the number of exports and fails if name is taken.
func checkExportName(s section, name string) (uint32, error) {
	r := reader{b: s.body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		if r.name() == name && r.err == nil {
			return 0, fmt.Errorf("preempt: the module already exports %q", name)
		}
		r.byte()
		r.u32()
	}
	if r.err != nil {
		return 0, fmt.Errorf("preempt: export section at offset %#x: %v", s.off, r.err)
	}
	return n, nil
}

// instrumentCode rewrites every function body of the code section.
func instrumentCode(s section, check []byte) ([]byte, error) {
	r := reader{b: s.body}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(s.body)+len(s.body)/8), n)
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		if r.err != nil || uint64(r.off)+uint64(size) > uint64(len(r.b)) {
			return nil, fmt.Errorf("preempt: code section at offset %#x: body %d runs past the end", s.off, i)
		}
		body := r.b[r.off : r.off+int(size)]
		var err error
		fn, err = instrumentBody(fn[:0], body, check)
		if err != nil {
			return nil, fmt.Errorf("preempt: function body %d (at offset %#x): %v", i, s.off+r.off, err)
		}
		r.off += int(size)
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if r.err != nil || r.off != len(r.b) {
		return nil, fmt.Errorf("preempt: code section at offset %#x: malformed", s.off)
	}
	return out, nil
}

// instrumentBody appends body to dst with check after the local
// declarations and after every loop's block type.
func instrumentBody(dst, body, check []byte) ([]byte, error) {
	r := reader{b: body}
	groups := r.u32()
	for i := uint32(0); i < groups && r.err == nil; i++ {
		r.u32()
		r.byte()
	}
	if r.err != nil {
		return nil, fmt.Errorf("locals: %v", r.err)
	}
	dst = append(dst, body[:r.off]...)
	dst = append(dst, check...)
	from := r.off
	for r.off < len(r.b) {
		at := r.off
		op := r.byte()
		if err := skipImmediates(&r, op); err != nil {
			return nil, fmt.Errorf("offset %d: %v", at, err)
		}
		if r.err != nil {
			return nil, fmt.Errorf("offset %d: opcode %#x: %v", at, op, r.err)
		}
		if op == 0x03 { // loop
			dst = append(dst, body[from:r.off]...)
			dst = append(dst, check...)
			from = r.off
		}
	}
	return append(dst, body[from:]...), nil
}

// skipImmediates reads past the immediates of op.
func skipImmediates(r *reader, op byte) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if: block type
		r.s64()
	case op <= 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b || op == 0xd1:
		// no immediates: unreachable, nop, else, end, return, drop, select, ref.is_null
	case op == 0x0c || op == 0x0d || op == 0x10 || op == 0x12 || op == 0xd2:
		r.u32() // br, br_if, call, return_call, ref.func
	case op == 0x0e: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select t*
		n := r.u32()
		r.skip(int(n))
	case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3e: // loads and stores: memarg
		r.memarg()
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41:
		r.s64()
	case op == 0x42:
		r.s64()
	case op == 0x43:
		r.skip(4)
	case op == 0x44:
		r.skip(8)
	case op >= 0x45 && op <= 0xc4: // numeric, conversions, sign extension
	case op == 0xd0: // ref.null t
		r.byte()
	case op == 0xfc:
		return skipFC(r)
	case op == 0xfd:
		return skipSIMD(r)
	case op == 0xfe:
		return skipAtomic(r)
	default:
		return fmt.Errorf("opcode %#x is not supported", op)
	}
	return nil
}

// skipFC handles the 0xFC prefix: saturating truncation, bulk memory and
// table instructions.
func skipFC(r *reader) error {
	switch sub := r.u32(); {
	case sub <= 7: // trunc_sat
	case sub == 8: // memory.init data, mem
		r.u32()
		r.u32()
	case sub == 9 || sub == 13 || sub == 15 || sub == 16 || sub == 17:
		r.u32() // data.drop, elem.drop, table.grow/size/fill
	case sub == 10 || sub == 12 || sub == 14: // memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	case sub == 11: // memory.fill
		r.u32()
	default:
		return fmt.Errorf("opcode 0xfc %d is not supported", sub)
	}
	return nil
}

// skipSIMD handles the 0xFD prefix (fixed-width SIMD and relaxed SIMD).
func skipSIMD(r *reader) error {
	switch sub := r.u32(); {
	case sub <= 11 || sub == 92 || sub == 93: // loads, stores, load_zero
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.skip(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.skip(1)
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.skip(1)
	case sub <= 0x113:
		// every other SIMD and relaxed-SIMD instruction has no immediates
	default:
		return fmt.Errorf("opcode 0xfd %d is not supported", sub)
	}
	return nil
}

// skipAtomic handles the 0xFE prefix (threads): atomic.fence has a reserved
// byte, every other instruction a memarg.
func skipAtomic(r *reader) error {
	switch sub := r.u32(); {
	case sub == 3:
		r.skip(1)
	case sub <= 0x4e:
		r.memarg()
	default:
		return fmt.Errorf("opcode 0xfe %d is not supported", sub)
	}
	return nil
}

// reader decodes the binary format; the first error sticks and later reads
// return zero values.
type reader struct {
	b   []byte
	off int
	err error
}

var errShort = errors.New("unexpected end")

func (r *reader) byte() byte {
	if r.err != nil || r.off >= len(r.b) {
		r.err = errShort
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) skip(n int) {
	if r.err != nil || n < 0 || r.off+n > len(r.b) {
		r.err = errShort
		return
	}
	r.off += n
}

func (r *reader) rest() []byte { return r.b[r.off:] }

// u32 reads an unsigned LEB128 of at most 5 bytes.
func (r *reader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:min(len(r.b), r.off+5)])
	if n <= 0 || v > 1<<32-1 {
		r.err = errors.New("bad unsigned LEB128")
		return 0
	}
	r.off += n
	return uint32(v)
}

// s64 reads a signed LEB128 of at most 10 bytes (block types, constants).
func (r *reader) s64() {
	if r.err != nil {
		return
	}
	for i := 0; i < 10; i++ {
		c := r.byte()
		if c&0x80 == 0 {
			return
		}
	}
	r.err = errors.New("bad signed LEB128")
}

func (r *reader) name() string {
	n := r.u32()
	if r.err != nil || r.off+int(n) > len(r.b) {
		r.err = errShort
		return ""
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s
}

// memarg reads alignment (with the multi-memory flag) and offset.
func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // a memory index follows
		r.u32()
	}
	r.u64()
}

// u64 reads an unsigned LEB128 of at most 10 bytes (memory64 offsets).
func (r *reader) u64() {
	if r.err != nil {
		return
	}
	_, n := binary.Uvarint(r.b[r.off:min(len(r.b), r.off+10)])
	if n <= 0 {
		r.err = errors.New("bad unsigned LEB128")
		return
	}
	r.off += n
}

func (r *reader) limits() {
	flags := r.u32()
	r.u64()
	if flags&1 != 0 {
		r.u64()
	}
}

func appendU32(b []byte, v uint32) []byte { return binary.AppendUvarint(b, uint64(v)) }

func appendName(b []byte, s string) []byte { return append(appendU32(b, uint32(len(s))), s...) }
