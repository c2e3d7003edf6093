//! Native tests of a plugin: encode a few events or profiles into a batch
//! as the host would ([`events`], [`profiles`]) and judge it with a plugin
//! ([`run`]), with `cargo test` on the build machine.
//!
//! ```
//! use segd::testing::{events, Value::*};
//!
//! let batch = events(1_700_000_000_000, &[
//!     ("ann", "checkout", 1_699_999_999_000, &[("amount", Num(150.0)), ("premium", Bool(true))]),
//!     ("bob", "search", 1_699_999_999_500, &[("term", Str("usb-c cable"))]),
//! ]);
//! let b = segd::Batch::decode(&batch).unwrap();
//! assert_eq!((b.len(), b.user(1), b.name(1)), (2, "bob", "search"));
//! assert_eq!(b.column("amount").num(0), Some(150.0));
//! assert_eq!(b.column("term").str(1), Some("usb-c cable"));
//! assert_eq!(b.column("term").str(0), None); // absent
//! ```

use crate::{Plugin, Runtime, EVENTS, PROFILES};

/// A property value to encode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// JSON null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string.
    Str(&'a str),
    /// A nested array or object, as its JSON text.
    Json(&'a str),
}

/// An event to encode: user, name, time (Unix ms) and properties.
pub type Event<'a> = (&'a str, &'a str, i64, &'a [(&'a str, Value<'a>)]);

/// A profile to encode: user and attributes.
pub type Profile<'a> = (&'a str, &'a [(&'a str, Value<'a>)]);

/// Encodes an event batch whose host clock reads `now`.
pub fn events(now: i64, evs: &[Event]) -> Vec<u8> {
    let items: Vec<_> = evs.iter().map(|e| (e.0, e.1, e.2, e.3)).collect();
    encode(EVENTS, now, &items)
}

/// Encodes a profile batch whose host clock reads `now`.
pub fn profiles(now: i64, ps: &[Profile]) -> Vec<u8> {
    let items: Vec<_> = ps.iter().map(|p| (p.0, "", 0, p.1)).collect();
    encode(PROFILES, now, &items)
}

/// Builds plugin `P` from `params` (JSON) and judges `batch`: one answer
/// per item, or the plugin's error.
pub fn run<P: Plugin>(params: &str, batch: &[u8]) -> Result<Vec<bool>, String> {
    let mut rt = Runtime::<P>::new();
    rt.init(params.as_bytes())?;
    let n = if batch.len() >= 16 { u32::from_le_bytes([batch[12], batch[13], batch[14], batch[15]]) as usize } else { 0 };
    let mut out = vec![!0u64; (n + 63) / 64]; // the runtime must zero it
    rt.run(batch, &mut out)?;
    Ok((0..n).map(|i| out[i / 64] & (1 << (i % 64)) != 0).collect())
}

type Raw<'a> = (&'a str, &'a str, i64, &'a [(&'a str, Value<'a>)]);

fn encode(kind: u32, now: i64, items: &[Raw]) -> Vec<u8> {
    let mut keys: Vec<&str> = Vec::new();
    for it in items {
        for (k, _) in it.3 {
            if !keys.contains(k) {
                keys.push(k);
            }
        }
    }
    keys.sort_unstable();
    let (n, k) = (items.len(), keys.len());
    let users = crate::HEADER_SIZE;
    let names = users + 8 * n;
    let times = names + 8 * n;
    let key_tab = times + 8 * n;
    let values = key_tab + 8 * k;
    let types = values + 8 * k * n;
    let heap = (types + k * n + 7) & !7;
    let mut b = vec![0u8; heap];
    let mut strs: Vec<u8> = Vec::new();
    let mut put_ref = |b: &mut Vec<u8>, at: usize, s: &[u8]| {
        b[at..at + 4].copy_from_slice(&((heap + strs.len()) as u32).to_le_bytes());
        b[at + 4..at + 8].copy_from_slice(&(s.len() as u32).to_le_bytes());
        strs.extend_from_slice(s);
    };
    for (i, it) in items.iter().enumerate() {
        put_ref(&mut b, users + 8 * i, it.0.as_bytes());
        put_ref(&mut b, names + 8 * i, it.1.as_bytes());
        b[times + 8 * i..times + 8 * i + 8].copy_from_slice(&it.2.to_le_bytes());
    }
    for (j, key) in keys.iter().enumerate() {
        put_ref(&mut b, key_tab + 8 * j, key.as_bytes());
        for (i, it) in items.iter().enumerate() {
            let slot = j * n + i;
            let v = it.3.iter().rev().find(|(name, _)| name == key).map(|(_, v)| *v);
            let tag = match v {
                None => 0,
                Some(Value::Null) => 1,
                Some(Value::Bool(false)) => 2,
                Some(Value::Bool(true)) => 3,
                Some(Value::Num(x)) => {
                    b[values + 8 * slot..values + 8 * slot + 8].copy_from_slice(&x.to_le_bytes());
                    4
                }
                Some(Value::Str(s)) => {
                    put_ref(&mut b, values + 8 * slot, s.as_bytes());
                    5
                }
                Some(Value::Json(s)) => {
                    put_ref(&mut b, values + 8 * slot, s.as_bytes());
                    6
                }
            };
            b[types + slot] = tag;
        }
    }
    let heap_len = strs.len();
    b.extend_from_slice(&strs);
    while b.len() % 8 != 0 {
        b.push(0);
    }
    let total = b.len();
    let header: [(usize, u32); 14] = [
        (0, crate::MAGIC),
        (4, crate::ABI_VERSION),
        (8, kind),
        (12, n as u32),
        (24, k as u32),
        (28, total as u32),
        (32, users as u32),
        (36, names as u32),
        (40, times as u32),
        (44, key_tab as u32),
        (48, types as u32),
        (52, values as u32),
        (56, heap as u32),
        (60, heap_len as u32),
    ];
    for (at, v) in header {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    b[16..24].copy_from_slice(&now.to_le_bytes());
    b
}
