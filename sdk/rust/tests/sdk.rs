//! The host-independent parts: batch decoding, params, keys, the runtime's
//! calls as the host makes them.

use segd::testing::{events, profiles, run, Value::*};
use segd::{Batch, Bits, Init, Item, Key, Plugin, Runtime, Type};

struct Amount {
    min: f64,
    amount: Key,
}

impl Plugin for Amount {
    const KINDS: u32 = segd::EVENTS;
    fn init(init: &mut Init) -> Result<Self, String> {
        let min = match init.params().get("min") {
            segd::Json::Number(x) => *x,
            other => return Err(format!("params: min must be a number, not {}", other.kind())),
        };
        let amount = init.prop("amount");
        assert_eq!(init.prop("amount"), amount);
        init.send_only_keys();
        Ok(Amount { min, amount })
    }
    fn event(&mut self, e: Item) -> bool {
        e.num_of(self.amount).map_or(false, |a| a > self.min)
    }
}

/// Per item by name, every accessor.
struct ByName;

impl Plugin for ByName {
    const KINDS: u32 = segd::EVENTS | segd::PROFILES;
    fn init(_: &mut Init) -> Result<Self, String> {
        Ok(ByName)
    }
    fn event(&mut self, e: Item) -> bool {
        e.name() == "checkout" && e.num("amount").unwrap_or(0.0) > 100.0 && e.bool("premium") != Some(false)
    }
    fn profile(&mut self, p: Item) -> bool {
        p.str("country").map_or(false, |c| c.eq_ignore_ascii_case("fr")) && p.has("email")
    }
}

/// A batch handler that fails cleanly.
struct Failing;

impl Plugin for Failing {
    fn init(_: &mut Init) -> Result<Self, String> {
        Ok(Failing)
    }
    fn events(&mut self, b: &Batch, _: &mut Bits) -> Result<(), String> {
        Err(format!("refusing {} events", b.len()))
    }
}

#[test]
fn decodes_every_column_and_type() {
    let data = events(
        42,
        &[
            ("ann", "checkout", 7, &[("a", Num(1.5)), ("b", Str("x")), ("c", Bool(true)), ("d", Json("[1]")), ("e", Null)]),
            ("bob", "view", 8, &[("b", Num(2.0)), ("c", Bool(false))]),
        ],
    );
    let b = Batch::decode(&data).unwrap();
    assert_eq!((b.len(), b.now(), b.kind()), (2, 42, segd::EVENTS));
    assert_eq!((b.user(0), b.name(1), b.time(1)), ("ann", "view", 8));
    let mut keys: Vec<_> = b.keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a", "b", "c", "d", "e"]);
    let types: Vec<_> = ["a", "b", "c", "d", "e", "zz"].iter().map(|k| b.column(k).typ(0)).collect();
    assert_eq!(types, [Type::Number, Type::String, Type::True, Type::Json, Type::Null, Type::Absent]);
    assert_eq!(b.column("b").num(1), Some(2.0));
    assert_eq!(b.column("b").str(1), None);
    assert_eq!(b.column("c").bool(1), Some(false));
    assert_eq!(b.column("a").typ(1), Type::Absent);
    assert_eq!(b.column("d").json(0), Some("[1]"));
    assert_eq!(b.column("a").nums().collect::<Vec<_>>(), [Some(1.5), None]);
    assert!(!b.column("zz").present() && b.column("zz").nums().count() == 0);
    assert_eq!(b.column("a").typ(99), Type::Absent, "past the last item");
}

#[test]
fn refuses_malformed_batches() {
    let good = events(0, &[("u", "e", 0, &[("k", Str("v"))])]);
    let mut short_total = good.clone();
    short_total[28] ^= 8;
    let mut magic = good.clone();
    magic[0] = 0;
    let mut major = good.clone();
    major[6] = 2;
    let mut column = good.clone();
    column[52..56].copy_from_slice(&(good.len() as u32).to_le_bytes());
    let mut key_ref = good.clone();
    let key_tab = u32::from_le_bytes([good[44], good[45], good[46], good[47]]) as usize;
    key_ref[key_tab + 4..key_tab + 8].copy_from_slice(&1000u32.to_le_bytes());
    for (data, want) in [
        (&good[..10], "shorter than the 64-byte header"),
        (&short_total[..], "header says"),
        (&magic[..], "magic"),
        (&major[..], "ABI major 2"),
        (&column[..], "column values"),
        (&key_ref[..], "string reference"),
    ] {
        let err = Batch::decode(data).err().expect(want).to_string();
        assert!(err.contains(want), "{:?} does not say {:?}", err, want);
    }
}

#[test]
fn per_item_handlers_by_key_and_by_name() {
    let batch = events(
        0,
        &[
            ("a", "checkout", 0, &[("amount", Num(150.0))]),
            ("b", "checkout", 0, &[("amount", Num(50.0))]),
            ("c", "checkout", 0, &[("amount", Str("150"))]),
            ("d", "checkout", 0, &[("amount", Num(150.0)), ("premium", Bool(false))]),
            ("e", "refund", 0, &[("amount", Num(150.0))]),
            ("f", "checkout", 0, &[]),
        ],
    );
    assert_eq!(run::<Amount>(r#"{"min": 100}"#, &batch).unwrap(), [true, false, false, true, true, false]);
    assert_eq!(run::<ByName>("", &batch).unwrap(), [true, false, false, false, false, false]);
    let ps = profiles(
        0,
        &[("a", &[("country", Str("FR")), ("email", Null)]), ("b", &[("country", Str("fr"))]), ("c", &[("country", Num(1.0))])],
    );
    assert_eq!(run::<ByName>("{}", &ps).unwrap(), [true, false, false]);
}

#[test]
fn many_items_fill_several_words() {
    let names: Vec<String> = (0..130).map(|i| format!("u{}", i)).collect();
    let props: Vec<[(&str, segd::testing::Value); 1]> = (0..130).map(|i| [("amount", Num(i as f64))]).collect();
    let evs: Vec<segd::testing::Event> = (0..130).map(|i| (names[i].as_str(), "e", 0, &props[i][..])).collect();
    let got = run::<Amount>(r#"{"min": 63.5}"#, &events(0, &evs)).unwrap();
    assert_eq!(got.iter().filter(|m| **m).count(), 130 - 64);
    assert!(!got[63] && got[64] && got[129]);
}

#[test]
fn params_errors_and_kinds() {
    let batch = events(0, &[("a", "e", 0, &[])]);
    assert_eq!(run::<Amount>(r#"{"min": "x"}"#, &batch).unwrap_err(), "params: min must be a number, not string");
    assert!(run::<Amount>(r#"{"min": }"#, &batch).unwrap_err().starts_with("params: invalid JSON at byte 8"));
    assert_eq!(run::<Failing>("{}", &batch).unwrap_err(), "refusing 1 events");
    let ps = profiles(0, &[("a", &[])]);
    assert!(run::<Amount>(r#"{"min": 1}"#, &ps).unwrap_err().contains("does not judge profiles"));
}

#[test]
fn runtime_calls_as_the_host_makes_them() {
    let mut rt = Runtime::<Amount>::new();
    let params = br#"{"min": 100}"#;
    let p = rt.alloc(params.len());
    assert_eq!(p as usize % 8, 0);
    // SAFETY: alloc returned at least params.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(params.as_ptr(), p, params.len()) };
    assert_eq!(rt.init_at(p as usize, params.len()), 0);
    assert_eq!(rt.declared_props().unwrap(), ["amount"]);
    assert_eq!(rt.props_json(), r#"["amount"]"#);

    let batch = events(0, &[("a", "e", 0, &[("amount", Num(101.0))]), ("b", "e", 0, &[("amount", Num(99.0))])]);
    let len = (batch.len() + 7) & !7;
    let p = rt.alloc(len + 8);
    unsafe { std::ptr::copy_nonoverlapping(batch.as_ptr(), p, batch.len()) };
    let out = p as usize + len;
    assert_eq!(rt.match_at(p as usize, batch.len(), out), 0);
    assert_eq!(unsafe { *(out as *const u64) }, 1);
    // A batch outside the buffer is refused with a message.
    assert_eq!(rt.match_at(8, 64, out), 1);
    assert!(rt.last_error().contains("outside the buffer"), "{}", rt.last_error());
}
