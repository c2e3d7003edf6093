// Package preempt rewrites a WebAssembly module so that its host can stop
// it: every function entry and every loop header counts down a budget, and
// when it runs out the guest calls a host function (a new import), which
// either grants a new budget or answers 0, and the guest traps
// (unreachable). Function entries count down a global (so recursion and
// call chains are bounded); loop headers count down a new local of their
// function, which the compiler keeps in a register, so a tight loop pays a
// decrement and a branch per iteration rather than a load and a store.
//
// WebAssembly has no preemption. wazero v1.12's own way to stop a runaway
// guest (WithCloseOnContextDone) calls out of compiled code into Go at every
// loop header, which makes a Go guest 3–5x slower. Counting down a global
// costs a few instructions; calling out only every budget-th time keeps the
// deadline's cost to a few percent. Calling out is also what lets the Go
// runtime stop the goroutine for a garbage collection: compiled code that
// never leaves a loop cannot be preempted, so a flag set from a timer
// goroutine would deadlock against a collection that waits for the loop.
//
// Every loop and every recursion passes through a check, so a guest cannot
// run for long without calling the host; straight-line code between checks
// is bounded by the size of the module. A module with a start section is
// refused: its start function runs while the module is instantiated, before
// a host knows which call it belongs to.
//
// The rewrite decodes the immediates of every instruction in the core
// specification (with sign extension, saturating conversions, bulk memory,
// reference types, SIMD, tail calls and threads) and refuses anything else
// with an error naming the function and offset: the caller falls back to a
// slower way to interrupt. Branch targets in WebAssembly are label depths,
// not offsets, so inserting closed if blocks moves no branch. The new
// import shifts the index of every function defined in the module by one;
// calls, ref.func, exports, element segments and the name section are
// renumbered. DWARF custom sections, whose code offsets would be wrong
// afterwards, are dropped.
package preempt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/segd/segd/plugins/internal/wasmbin"
)

// Section ids of the binary format.
const (
	secCustom   = 0
	secType     = 1
	secImport   = 2
	secFunction = 3
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secElement  = 9
	secCode     = 10
)

// order gives each known section id its place in a module (the tag section
// sits between memory and global; data count between element and code).
var order = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

var header = []byte{0, 'a', 's', 'm', 1, 0, 0, 0}

// Import names the host function the instrumented guest calls when its
// budget runs out. Its type is () -> i32: 0 makes the guest trap, anything
// else is the next budget (loop iterations plus function entries before the
// next call). The budget starts at 0, so the first check of an instance
// calls the host.
type Import struct{ Module, Name string }

// Instrument returns a copy of module with the checks and the import added.
// module is not modified. The result still has to be validated (compiling
// it does that).
func Instrument(module []byte, imp Import) ([]byte, error) {
	if len(module) < len(header) || !bytes.Equal(module[:len(header)], header) {
		return nil, errors.New("preempt: not a WebAssembly 1.0 binary module")
	}
	m := rewrite{}
	var secs []section
	r := wasmbin.Reader{B: module, Off: len(header)}
	for r.Off < len(r.B) {
		start := r.Off
		id, body, ok := r.Section()
		if !ok {
			return nil, fmt.Errorf("preempt: section at offset %#x runs past the end of the module", start)
		}
		s := section{id: id, body: body.B, off: r.Off - len(body.B)}
		if id == secCustom && isDebug(s.body) {
			continue
		}
		if _, ok := order[id]; !ok && id != secCustom {
			return nil, fmt.Errorf("preempt: unknown section id %d at offset %#x", id, start)
		}
		if id == secStart {
			return nil, errors.New("preempt: the module has a start section, which runs while it is instantiated, before a host can bound it; export an _initialize function instead")
		}
		secs = append(secs, s)
	}

	// Pass 1: the type and import sections fix the new function's type
	// and index, and the global section the budget's index.
	typeIdx, err := m.addType(&secs)
	if err != nil {
		return nil, err
	}
	if err := m.addImport(&secs, imp, typeIdx); err != nil {
		return nil, err
	}
	if err := m.addGlobal(&secs); err != nil {
		return nil, err
	}
	if err := m.readSignatures(secs); err != nil {
		return nil, err
	}

	// Pass 2: renumber and instrument.
	kept := secs[:0]
	for _, sec := range secs {
		s := &sec
		var err error
		switch s.id {
		case secExport:
			s.body, err = m.exports(*s)
		case secElement:
			s.body, err = m.elements(*s)
		case secCode:
			s.body, err = m.code(*s)
		case secCustom:
			var ok bool
			if s.body, ok = m.names(s.body); !ok {
				continue // a name section that does not parse
			}
		}
		if err != nil {
			return nil, err
		}
		kept = append(kept, *s)
	}

	out := make([]byte, 0, len(module)+len(module)/4)
	out = append(out, header...)
	for _, s := range kept {
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

// rewrite holds what the passes share.
type rewrite struct {
	funcImports uint32   // functions imported before ours: the new import's index
	budget      uint32   // global index of the budget
	params      []uint32 // parameter count of each defined function
	bodies      int      // function bodies rewritten so far
}

// readSignatures records the parameter count of every defined function,
// which places the new local after its parameters and locals.
func (m *rewrite) readSignatures(secs []section) error {
	var types []uint32
	for _, s := range secs {
		switch s.id {
		case secType:
			r := wasmbin.Reader{B: s.body}
			n := r.U32()
			for i := uint32(0); i < n && r.Err == nil; i++ {
				if form := r.Byte(); form != 0x60 {
					return fmt.Errorf("preempt: type %d: form %#x is not a function type", i, form)
				}
				p := r.U32()
				r.Skip(int(p))
				res := r.U32()
				r.Skip(int(res))
				types = append(types, p)
			}
			if r.Err != nil {
				return fmt.Errorf("preempt: type section at offset %#x: %v", s.off, r.Err)
			}
		case secFunction:
			r := wasmbin.Reader{B: s.body}
			n := r.U32()
			for i := uint32(0); i < n && r.Err == nil; i++ {
				t := r.U32()
				if int(t) >= len(types) {
					return fmt.Errorf("preempt: function %d has type %d, of %d", i, t, len(types))
				}
				m.params = append(m.params, types[t])
			}
			if r.Err != nil {
				return fmt.Errorf("preempt: function section at offset %#x: %v", s.off, r.Err)
			}
		}
	}
	return nil
}

// fn renumbers a function index: defined functions move up by one.
func (m *rewrite) fn(idx uint32) uint32 {
	if idx >= m.funcImports {
		return idx + 1
	}
	return idx
}

// entryCheck is inserted at function entries: the global budget counts
// calls, and the local starts with a full budget for the function's loops.
func (m *rewrite) entryCheck(dst []byte, local uint32) []byte {
	dst = m.countdown(dst, 0x23, 0x24, m.budget)
	dst = appendS32(append(dst, 0x41), LoopBudget) // i32.const
	return appendU32(append(dst, 0x21), local)     // local.set
}

// loopCheck is inserted at loop headers, on the function's local.
func (m *rewrite) loopCheck(dst []byte, local uint32) []byte {
	return m.countdown(dst, 0x20, 0x21, local)
}

// countdown appends, for the variable idx read and written with the
// opcodes get and set (global.get/set or local.get/set):
//
//	if v == 0 { v = host(); if v == 0 { unreachable } }
//	v--
func (m *rewrite) countdown(dst []byte, get, set byte, idx uint32) []byte {
	g := appendU32([]byte{get}, idx)
	st := appendU32([]byte{set}, idx)
	dst = append(dst, g...)
	dst = append(dst, 0x45, 0x04, 0x40) // i32.eqz; if
	dst = appendU32(append(dst, 0x10), m.funcImports)
	dst = append(dst, st...)
	dst = append(dst, g...)
	dst = append(dst, 0x45, 0x04, 0x40, 0x00, 0x0b) // i32.eqz; if; unreachable; end
	dst = append(dst, 0x0b)                         // end
	dst = append(dst, g...)
	dst = append(dst, 0x41, 0x01, 0x6b) // i32.const 1; i32.sub
	return append(dst, st...)
}

// LoopBudget is the budget a function's loops start with on each call;
// later budgets are what the host returns.
const LoopBudget = 8192

// addType appends the type () -> i32 and returns its index.
func (m *rewrite) addType(secs *[]section) (uint32, error) {
	ft := []byte{0x60, 0x00, 0x01, 0x7f}
	for i := range *secs {
		s := &(*secs)[i]
		if s.id != secType {
			continue
		}
		r := wasmbin.Reader{B: s.body}
		n := r.U32()
		if r.Err != nil {
			return 0, fmt.Errorf("preempt: type section at offset %#x: bad count", s.off)
		}
		s.body = cat(appendU32(nil, n+1), r.Rest(), ft)
		return n, nil
	}
	*secs = insertSection(*secs, section{id: secType, body: cat(appendU32(nil, 1), ft)})
	return 0, nil
}

// addImport appends the host function to the imports, after counting the
// functions imported before it.
func (m *rewrite) addImport(secs *[]section, imp Import, typeIdx uint32) error {
	entry := cat(appendName(nil, imp.Module), appendName(nil, imp.Name), []byte{0x00})
	entry = appendU32(entry, typeIdx)
	for i := range *secs {
		s := &(*secs)[i]
		if s.id != secImport {
			continue
		}
		r := wasmbin.Reader{B: s.body}
		n := r.U32()
		entries := r.Off
		for j := uint32(0); j < n && r.Err == nil; j++ {
			mod, name, kind, _ := r.Import()
			if mod == imp.Module && name == imp.Name {
				return fmt.Errorf("preempt: the module already imports %s.%s", mod, name)
			}
			switch kind {
			case wasmbin.ImportFunction:
				m.funcImports++
			case wasmbin.ImportGlobal:
				m.budget++
			}
		}
		if r.Err != nil {
			return fmt.Errorf("preempt: import section at offset %#x: %v", s.off, r.Err)
		}
		s.body = cat(appendU32(nil, n+1), s.body[entries:], entry)
		return nil
	}
	*secs = insertSection(*secs, section{id: secImport, body: cat(appendU32(nil, 1), entry)})
	return nil
}

// addGlobal appends the budget, (mut i32) = 0, renumbering ref.func in the
// other globals' initializers.
func (m *rewrite) addGlobal(secs *[]section) error {
	budget := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}
	for i := range *secs {
		s := &(*secs)[i]
		if s.id != secGlobal {
			continue
		}
		r := wasmbin.Reader{B: s.body}
		n := r.U32()
		out := appendU32(nil, n+1)
		for j := uint32(0); j < n && r.Err == nil; j++ {
			from := r.Off
			r.Byte() // value type
			r.Byte() // mutability
			out = append(out, r.B[from:r.Off]...)
			var err error
			if out, err = m.expr(out, &r); err != nil {
				return fmt.Errorf("preempt: global %d: %v", j, err)
			}
		}
		if r.Err != nil || r.Off != len(r.B) {
			return fmt.Errorf("preempt: global section at offset %#x: malformed", s.off)
		}
		m.budget += n
		s.body = append(out, budget...)
		return nil
	}
	*secs = insertSection(*secs, section{id: secGlobal, body: cat(appendU32(nil, 1), budget)})
	return nil
}

// exports renumbers function exports.
func (m *rewrite) exports(s section) ([]byte, error) {
	r := wasmbin.Reader{B: s.body}
	n := r.U32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		out = appendName(out, r.Name())
		kind := r.Byte()
		idx := r.U32()
		if kind == 0x00 {
			idx = m.fn(idx)
		}
		out = appendU32(append(out, kind), idx)
	}
	if r.Err != nil || r.Off != len(r.B) {
		return nil, fmt.Errorf("preempt: export section at offset %#x: malformed", s.off)
	}
	return out, nil
}

// elements renumbers the functions of element segments (all eight forms).
func (m *rewrite) elements(s section) ([]byte, error) {
	r := wasmbin.Reader{B: s.body}
	n := r.U32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		flags := r.U32()
		out = appendU32(out, flags)
		var err error
		if flags > 7 {
			return nil, fmt.Errorf("preempt: element segment %d: unknown form %d", i, flags)
		}
		if flags&2 != 0 && flags&1 == 0 { // explicit table index
			out = appendU32(out, r.U32())
		}
		if flags&1 == 0 { // active: offset expression
			if out, err = m.expr(out, &r); err != nil {
				return nil, fmt.Errorf("preempt: element segment %d: %v", i, err)
			}
		}
		if flags&3 != 0 { // element kind or reference type
			out = append(out, r.Byte())
		}
		count := r.U32()
		out = appendU32(out, count)
		for j := uint32(0); j < count && r.Err == nil; j++ {
			if flags&4 == 0 {
				out = appendU32(out, m.fn(r.U32()))
				continue
			}
			if out, err = m.expr(out, &r); err != nil {
				return nil, fmt.Errorf("preempt: element segment %d: %v", i, err)
			}
		}
	}
	if r.Err != nil || r.Off != len(r.B) {
		return nil, fmt.Errorf("preempt: element section at offset %#x: malformed", s.off)
	}
	return out, nil
}

// names renumbers the function indices of a "name" custom section
// (function names, local names, label names). Any other custom section is
// returned as it is; a name section that does not parse is to be dropped
// (false): names serve only stack traces.
func (m *rewrite) names(body []byte) ([]byte, bool) {
	r := wasmbin.Reader{B: body}
	if r.Name() != "name" || r.Err != nil {
		return body, true
	}
	out := bytes.Clone(body[:r.Off])
	for r.Off < len(r.B) {
		id, subsection, ok := r.Section()
		if !ok {
			return nil, false
		}
		sub := subsection.B
		if id >= 1 && id <= 3 {
			var ok bool
			if sub, ok = m.nameMap(sub, id != 1); !ok {
				continue
			}
		}
		out = appendU32(append(out, id), uint32(len(sub)))
		out = append(out, sub...)
	}
	return out, true
}

// nameMap renumbers the function indices of a name map, or of an indirect
// name map (function index -> name map).
func (m *rewrite) nameMap(sub []byte, indirect bool) ([]byte, bool) {
	r := wasmbin.Reader{B: sub}
	n := r.U32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		out = appendU32(out, m.fn(r.U32()))
		if !indirect {
			out = appendName(out, r.Name())
			continue
		}
		from := r.Off
		inner := r.U32()
		for j := uint32(0); j < inner && r.Err == nil; j++ {
			r.U32()
			r.Name()
		}
		out = append(out, r.B[from:r.Off]...)
	}
	return out, r.Err == nil && r.Off == len(r.B)
}

// isDebug reports whether a custom section body is DWARF (.debug_*).
func isDebug(body []byte) bool {
	r := wasmbin.Reader{B: body}
	name := r.Name()
	return r.Err == nil && strings.HasPrefix(name, ".debug_")
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

// code instruments and renumbers every function body.
func (m *rewrite) code(s section) ([]byte, error) {
	r := wasmbin.Reader{B: s.body}
	n := r.U32()
	out := appendU32(make([]byte, 0, len(s.body)+len(s.body)/4), n)
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.U32()
		if r.Err != nil || uint64(r.Off)+uint64(size) > uint64(len(r.B)) {
			return nil, fmt.Errorf("preempt: code section at offset %#x: body %d runs past the end", s.off, i)
		}
		body := r.B[r.Off : r.Off+int(size)]
		var err error
		fn, err = m.body(fn[:0], body)
		if err != nil {
			return nil, fmt.Errorf("preempt: function body %d (at offset %#x): %v", i, s.off+r.Off, err)
		}
		r.Off += int(size)
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if r.Err != nil || r.Off != len(r.B) {
		return nil, fmt.Errorf("preempt: code section at offset %#x: malformed", s.off)
	}
	return out, nil
}

// body appends a function body to dst with the check after the local
// declarations and after every loop's block type, and functions renumbered.
func (m *rewrite) body(dst, body []byte) ([]byte, error) {
	if m.bodies >= len(m.params) {
		return nil, fmt.Errorf("more function bodies than the function section declares (%d)", len(m.params))
	}
	local := m.params[m.bodies]
	m.bodies++
	r := wasmbin.Reader{B: body}
	groups := r.U32()
	from := r.Off
	for i := uint32(0); i < groups && r.Err == nil; i++ {
		local += r.U32()
		r.Byte()
	}
	if r.Err != nil {
		return nil, fmt.Errorf("locals: %v", r.Err)
	}
	// The locals vector gains a group of one i32: the loop budget.
	dst = appendU32(dst, groups+1)
	dst = append(dst, body[from:r.Off]...)
	dst = append(dst, 0x01, 0x7f)
	dst = m.entryCheck(dst, local)
	return m.instructions(dst, &r, len(body), local)
}

// expr appends a constant expression (through its end) with functions
// renumbered.
func (m *rewrite) expr(dst []byte, r *wasmbin.Reader) ([]byte, error) {
	from := r.Off
	for r.Err == nil {
		if r.Off >= len(r.B) {
			return nil, wasmbin.ErrShort
		}
		if r.B[r.Off] == 0x0b {
			r.Off++
			return m.instructions(dst, &wasmbin.Reader{B: r.B[:r.Off], Off: from}, r.Off, noChecks)
		}
		if err := skipImmediates(r, r.Byte()); err != nil {
			return nil, err
		}
	}
	return nil, r.Err
}

// noChecks tells instructions not to insert loop checks.
const noChecks = ^uint32(0)

// instructions copies r's instructions up to end into dst, renumbering
// call, return_call and ref.func, and with checks of local after loop
// headers (unless local is noChecks).
func (m *rewrite) instructions(dst []byte, r *wasmbin.Reader, end int, local uint32) ([]byte, error) {
	from := r.Off
	for r.Off < end && r.Err == nil {
		at := r.Off
		op := r.Byte()
		if op == 0x10 || op == 0x12 || op == 0xd2 { // call, return_call, ref.func
			dst = append(dst, r.B[from:r.Off]...)
			dst = appendU32(dst, m.fn(r.U32()))
			from = r.Off
			continue
		}
		if err := skipImmediates(r, op); err != nil {
			return nil, fmt.Errorf("offset %d: %v", at, err)
		}
		if r.Err != nil {
			return nil, fmt.Errorf("offset %d: opcode %#x: %v", at, op, r.Err)
		}
		if op == 0x03 && local != noChecks { // loop
			dst = append(dst, r.B[from:r.Off]...)
			dst = m.loopCheck(dst, local)
			from = r.Off
		}
	}
	if r.Err != nil {
		return nil, r.Err
	}
	return append(dst, r.B[from:end]...), nil
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// skipImmediates reads past the immediates of op.
func skipImmediates(r *wasmbin.Reader, op byte) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if: block type
		r.S64()
	case op <= 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b || op == 0xd1:
		// no immediates: unreachable, nop, else, end, return, drop, select, ref.is_null
	case op == 0x0c || op == 0x0d || op == 0x10 || op == 0x12 || op == 0xd2:
		r.U32() // br, br_if, call, return_call, ref.func
	case op == 0x0e: // br_table
		n := r.U32()
		for i := uint32(0); i <= n && r.Err == nil; i++ {
			r.U32()
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.U32()
		r.U32()
	case op == 0x1c: // select t*
		n := r.U32()
		r.Skip(int(n))
	case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
		r.U32()
	case op >= 0x28 && op <= 0x3e: // loads and stores: memarg
		r.Memarg()
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		r.U32()
	case op == 0x41:
		r.S64()
	case op == 0x42:
		r.S64()
	case op == 0x43:
		r.Skip(4)
	case op == 0x44:
		r.Skip(8)
	case op >= 0x45 && op <= 0xc4: // numeric, conversions, sign extension
	case op == 0xd0: // ref.null t
		r.Byte()
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
func skipFC(r *wasmbin.Reader) error {
	switch sub := r.U32(); {
	case sub <= 7: // trunc_sat
	case sub == 8: // memory.init data, mem
		r.U32()
		r.U32()
	case sub == 9 || sub == 13 || sub == 15 || sub == 16 || sub == 17:
		r.U32() // data.drop, elem.drop, table.grow/size/fill
	case sub == 10 || sub == 12 || sub == 14: // memory.copy, table.init, table.copy
		r.U32()
		r.U32()
	case sub == 11: // memory.fill
		r.U32()
	default:
		return fmt.Errorf("opcode 0xfc %d is not supported", sub)
	}
	return nil
}

// skipSIMD handles the 0xFD prefix (fixed-width SIMD and relaxed SIMD).
func skipSIMD(r *wasmbin.Reader) error {
	switch sub := r.U32(); {
	case sub <= 11 || sub == 92 || sub == 93: // loads, stores, load_zero
		r.Memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.Skip(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.Skip(1)
	case sub >= 84 && sub <= 91: // load/store lane
		r.Memarg()
		r.Skip(1)
	case sub <= 0x113:
		// every other SIMD and relaxed-SIMD instruction has no immediates
	default:
		return fmt.Errorf("opcode 0xfd %d is not supported", sub)
	}
	return nil
}

// skipAtomic handles the 0xFE prefix (threads): atomic.fence has a reserved
// byte, every other instruction a memarg.
func skipAtomic(r *wasmbin.Reader) error {
	switch sub := r.U32(); {
	case sub == 3:
		r.Skip(1)
	case sub <= 0x4e:
		r.Memarg()
	default:
		return fmt.Errorf("opcode 0xfe %d is not supported", sub)
	}
	return nil
}

func appendU32(b []byte, v uint32) []byte { return binary.AppendUvarint(b, uint64(v)) }

// appendS32 appends a signed LEB128.
func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte { return append(appendU32(b, uint32(len(s))), s...) }
