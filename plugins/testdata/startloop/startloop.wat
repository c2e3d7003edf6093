;; startloop: a hand-written plugin with a start section (which the interrupt
;; rewrite refuses, so the host falls back to wazero's interrupts) whose
;; segd_match never returns.
(module
  (memory (export "memory") 1)
  (global $started (mut i32) (i32.const 0))
  (func $start (global.set $started (i32.const 1)))
  (start $start)
  (func (export "segd_abi_version") (result i32) (i32.const 0x00010000))
  (func (export "segd_kinds") (result i32) (i32.const 1))
  (func (export "segd_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "segd_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "segd_error") (result i64) (i64.const 0))
  (func (export "segd_match") (param i32 i32 i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
