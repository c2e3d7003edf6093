;; amount.wat: a segd plugin written by hand in WebAssembly text, to show that
;; ABI v1 (sdk/ABI.md) is language-neutral. It matches events whose numeric
;; property "amount" is greater than params.min.
;;
;; Build: wat2wasm amount.wat -o amount.wasm   (Debian package: wabt)
;; Params: {"min": 100}  (the first number in the params JSON is taken)
(module
  (import "segd" "log" (func $log (param i32 i32 i32)))

  (memory (export "memory") 1)

  ;; 16..: error messages; 64: the key we look for.
  (data (i32.const 16) "params: want {\"min\": <number>}")   ;; 30 bytes
  (data (i32.const 48) "bad batch magic")                   ;; 15 bytes
  (data (i32.const 64) "amount")
  (data (i32.const 80) "amount-wat ready")                  ;; 16 bytes

  (global $min (mut f64) (f64.const 0))
  (global $errp (mut i32) (i32.const 0))
  (global $errl (mut i32) (i32.const 0))

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

  (func (export "segd_abi_version") (result i32) (i32.const 0x00010000))
  (func (export "segd_kinds") (result i32) (i32.const 1))

  (func (export "segd_error") (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (global.get $errp)) (i64.const 32))
            (i64.extend_i32_u (global.get $errl))))

  (func $fail (param $p i32) (param $l i32) (result i32)
    (global.set $errp (local.get $p))
    (global.set $errl (local.get $l))
    (i32.const 1))

  ;; segd_init: parse the first number (optional '-', digits, optional
  ;; fraction) of the params JSON.
  (func (export "segd_init") (param $p i32) (param $l i32) (result i32)
    (local $end i32) (local $c i32) (local $v f64) (local $neg i32)
    (local $scale f64) (local $seen i32)
    (local.set $end (i32.add (local.get $p) (local.get $l)))
    ;; skip to the first '-' or digit
    (block $found
      (loop $skip
        (br_if $found (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $found (i32.eq (local.get $c) (i32.const 45)))
        (br_if $found (i32.lt_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 10)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $skip)))
    (if (i32.lt_u (local.get $p) (local.get $end))
      (then (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 45))
        (then (local.set $neg (i32.const 1))
              (local.set $p (i32.add (local.get $p) (i32.const 1)))))))
    ;; integer part
    (block $done
      (loop $digits
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
        (br_if $done (i32.ge_u (local.get $c) (i32.const 10)))
        (local.set $v (f64.add (f64.mul (local.get $v) (f64.const 10))
                               (f64.convert_i32_u (local.get $c))))
        (local.set $seen (i32.const 1))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $digits)))
    ;; fraction
    (if (i32.lt_u (local.get $p) (local.get $end))
      (then (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 46))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (local.set $scale (f64.const 0.1))
          (block $fdone
            (loop $frac
              (br_if $fdone (i32.ge_u (local.get $p) (local.get $end)))
              (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
              (br_if $fdone (i32.ge_u (local.get $c) (i32.const 10)))
              (local.set $v (f64.add (local.get $v)
                                     (f64.mul (local.get $scale) (f64.convert_i32_u (local.get $c)))))
              (local.set $scale (f64.mul (local.get $scale) (f64.const 0.1)))
              (local.set $p (i32.add (local.get $p) (i32.const 1)))
              (br $frac)))))))
    (if (i32.eqz (local.get $seen))
      (then (return (call $fail (i32.const 16) (i32.const 30)))))
    (if (local.get $neg) (then (local.set $v (f64.neg (local.get $v)))))
    (global.set $min (local.get $v))
    (call $log (i32.const 0) (i32.const 80) (i32.const 16))
    (i32.const 0))

  ;; segd_match: find key "amount" in the key table, then scan its type and
  ;; value columns.
  (func (export "segd_match") (param $b i32) (param $len i32) (param $out i32) (result i32)
    (local $n i32) (local $k i32) (local $j i32) (local $ref i32)
    (local $types i32) (local $values i32) (local $i i32) (local $w i32)
    (if (i32.ne (i32.load (local.get $b)) (i32.const 0x31424753))
      (then (return (call $fail (i32.const 48) (i32.const 15)))))
    (local.set $n (i32.load offset=12 (local.get $b)))
    (local.set $k (i32.load offset=24 (local.get $b)))
    ;; j = index of "amount" among the keys, or return with no match
    (block $found
      (loop $keys
        (if (i32.ge_u (local.get $j) (local.get $k)) (then (return (i32.const 0))))
        (local.set $ref (i32.add (local.get $b)
          (i32.add (i32.load offset=44 (local.get $b)) (i32.shl (local.get $j) (i32.const 3)))))
        (if (i32.eq (i32.load offset=4 (local.get $ref)) (i32.const 6))
          (then
            (local.set $ref (i32.add (local.get $b) (i32.load (local.get $ref))))
            (br_if $found
              (i32.and
                (i32.eq (i32.load (local.get $ref)) (i32.load (i32.const 64)))
                (i32.eq (i32.load16_u offset=4 (local.get $ref)) (i32.load16_u (i32.const 68)))))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $keys)))
    (local.set $types (i32.add (i32.add (local.get $b) (i32.load offset=48 (local.get $b)))
                               (i32.mul (local.get $j) (local.get $n))))
    (local.set $values (i32.add (i32.add (local.get $b) (i32.load offset=52 (local.get $b)))
                                (i32.shl (i32.mul (local.get $j) (local.get $n)) (i32.const 3))))
    (block $end
      (loop $items
        (br_if $end (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.eq (i32.load8_u (i32.add (local.get $types) (local.get $i))) (i32.const 4))
          (then
            (if (f64.gt (f64.load (i32.add (local.get $values) (i32.shl (local.get $i) (i32.const 3))))
                        (global.get $min))
              (then
                (local.set $w (i32.add (local.get $out) (i32.shl (i32.shr_u (local.get $i) (i32.const 6)) (i32.const 3))))
                (i64.store (local.get $w)
                  (i64.or (i64.load (local.get $w))
                          (i64.shl (i64.const 1) (i64.extend_i32_u (i32.and (local.get $i) (i32.const 63))))))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $items)))
    (i32.const 0))
)
