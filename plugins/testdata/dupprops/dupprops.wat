;; dupprops.wat: a test plugin whose segd_props lists keys twice. It
;; matches every event of a batch whose key table holds exactly two keys
;; (amount and other, each once), and none otherwise.
(module
  (memory (export "memory") 1)

  (data (i32.const 16) "[\"amount\",\"other\",\"amount\",\"other\",\"amount\"]")

  ;; The batch buffer lives at 1024; memory grows to fit.
  (func (export "segd_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need
      (i32.shr_u (i32.add (i32.add (local.get $size) (i32.const 1024)) (i32.const 65535))
                 (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (i32.const 1024))

  (func (export "segd_abi_version") (result i32) (i32.const 0x00010001))
  (func (export "segd_kinds") (result i32) (i32.const 1))
  (func (export "segd_error") (result i64) (i64.const 0))
  (func (export "segd_init") (param i32 i32) (result i32) (i32.const 0))

  (func (export "segd_props") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 44)))

  (func (export "segd_match") (param $b i32) (param $len i32) (param $out i32) (result i32)
    (local $n i32) (local $i i32) (local $w i32)
    (if (i32.ne (i32.load offset=24 (local.get $b)) (i32.const 2))
      (then (return (i32.const 0))))
    (local.set $n (i32.load offset=12 (local.get $b)))
    (block $end
      (loop $items
        (br_if $end (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $w (i32.add (local.get $out) (i32.shl (i32.shr_u (local.get $i) (i32.const 6)) (i32.const 3))))
        (i64.store (local.get $w)
          (i64.or (i64.load (local.get $w))
                  (i64.shl (i64.const 1) (i64.extend_i32_u (i32.and (local.get $i) (i32.const 63))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $items)))
    (i32.const 0))
)
