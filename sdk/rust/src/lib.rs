//! Write [segd](https://github.com/segd/segd) plugin predicates in Rust.
//!
//! A plugin judges a batch of events (or user profiles) and answers with one
//! bit per item. This crate implements the plugin ABI, version 1.1 (the
//! contract is `sdk/ABI.md` in the segd repository), with the standard
//! library only: implement [`Plugin`] for a type and call [`export!`] once.
//!
//! ```
//! use segd::{Bits, Batch, Init, Item, Key, Plugin};
//!
//! /// amount > params.min
//! pub struct Amount {
//!     min: f64,
//!     amount: Key,
//! }
//!
//! impl Plugin for Amount {
//!     const KINDS: u32 = segd::EVENTS | segd::PROFILES;
//!
//!     fn init(init: &mut Init) -> Result<Self, String> {
//!         let min = init.params().get("min").as_f64().ok_or("params: min must be a number")?;
//!         let amount = init.prop("amount"); // resolved once per batch
//!         init.send_only_keys(); // the host sends only "amount"
//!         Ok(Amount { min, amount })
//!     }
//!
//!     // Per item, through a resolved key...
//!     fn event(&mut self, e: Item) -> bool {
//!         e.num_of(self.amount).map_or(false, |a| a > self.min)
//!     }
//!
//!     // ... or over the whole column at once (optional: the default calls
//!     // `event` per item).
//!     fn events(&mut self, b: &Batch, out: &mut Bits) -> Result<(), String> {
//!         for (i, a) in b.col(self.amount).nums().enumerate() {
//!             if a.map_or(false, |a| a > self.min) {
//!                 out.set(i);
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! segd::export!(Amount);
//! # fn main() {
//! #     use segd::testing::{events, run, Value::*};
//! #     let batch = events(0, &[("ann", "checkout", 0, &[("amount", Num(150.0))]),
//! #                            ("bob", "checkout", 0, &[("amount", Str("150"))])]);
//! #     assert_eq!(run::<Amount>(r#"{"min": 100}"#, &batch).unwrap(), vec![true, false]);
//! # }
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasi` (Rust 1.63 or later; Debian's
//! `rustc`, `cargo` and `libstd-rust-dev-wasm32` are enough):
//!
//! ```text
//! [lib]
//! crate-type = ["cdylib"]
//!
//! cargo build --target wasm32-wasi --release
//! ```
//!
//! Three levels, from simplest to fastest: [`Item`] accessors by name
//! (`e.num("amount")`, a key-table search per read), by [`Key`] resolved
//! once per batch (`e.num_of(key)`, an index), and batch handlers that scan
//! whole [`Column`]s ([`Plugin::events`]). A Rust guest pays no more for a
//! call than native code, so the per-item handler is already fast.
//!
//! A panic aborts the instance (WebAssembly has no unwinding): the host
//! discards it and retries the batch once on a fresh one. Return `Err` from
//! a batch handler for a clean, reported failure instead.

#![warn(missing_docs)]

mod batch;
mod json;
pub mod testing;

pub use batch::{Batch, BatchError, Bits, Column, Item, Key, Type, HEADER_SIZE, MAGIC};
pub use json::{Json, ParseError, MAX_DEPTH};

/// ABI major version this crate implements.
pub const ABI_MAJOR: u32 = 1;
/// ABI minor version this crate implements.
pub const ABI_MINOR: u32 = 1;
/// `ABI_MAJOR << 16 | ABI_MINOR`, the value of the `segd_abi_version` export.
pub const ABI_VERSION: u32 = ABI_MAJOR << 16 | ABI_MINOR;
/// Kind bit and batch kind: events.
pub const EVENTS: u32 = 1;
/// Kind bit and batch kind: user profiles.
pub const PROFILES: u32 = 2;

/// A plugin: built once per instance from the rule's parameters, then asked
/// about batch after batch. An instance is used by one host thread at a time
/// and may be discarded between any two calls, so state kept between batches
/// must not matter for correctness.
pub trait Plugin: Sized {
    /// What the plugin judges: [`EVENTS`], [`PROFILES`] or both.
    const KINDS: u32 = EVENTS;

    /// Reads the parameters and declares keys. An `Err` rejects the
    /// parameters: segd reports it where the rule is compiled.
    fn init(init: &mut Init) -> Result<Self, String>;

    /// Whether event `e` matches. The default matches nothing; implement it,
    /// or [`Plugin::events`].
    fn event(&mut self, e: Item) -> bool {
        let _ = e;
        false
    }

    /// Whether profile `p` matches (attributes read like event properties).
    /// The default asks [`Plugin::event`].
    fn profile(&mut self, p: Item) -> bool {
        self.event(p)
    }

    /// Judges a batch of events, setting the bit of every match in `out`
    /// (zeroed). The default calls [`Plugin::event`] per item.
    fn events(&mut self, b: &Batch, out: &mut Bits) -> Result<(), String> {
        for i in 0..b.len() {
            if self.event(b.item(i)) {
                out.set(i);
            }
        }
        Ok(())
    }

    /// Judges a batch of profiles. The default calls [`Plugin::profile`] per
    /// item.
    fn profiles(&mut self, b: &Batch, out: &mut Bits) -> Result<(), String> {
        for i in 0..b.len() {
            if self.profile(b.item(i)) {
                out.set(i);
            }
        }
        Ok(())
    }
}

/// What [`Plugin::init`] gets: the parameters, and the registry of keys.
pub struct Init<'r> {
    params: &'r Json,
    keys: &'r mut Vec<String>,
    only_keys: &'r mut bool,
}

impl<'r> Init<'r> {
    /// The rule's parameters, a JSON object (`{}` when the rule has none).
    pub fn params(&self) -> &Json {
        self.params
    }

    /// Declares property `name` and returns its key: every batch resolves it
    /// once, and [`Item::num_of`], [`Batch::col`] and friends read it with
    /// no lookup. Declaring a name twice returns the same key.
    pub fn prop(&mut self, name: &str) -> Key {
        if let Some(i) = self.keys.iter().position(|k| k == name) {
            return Key(i);
        }
        self.keys.push(name.to_string());
        Key(self.keys.len() - 1)
    }

    /// Tells the host that the plugin reads properties only through the
    /// keys it declares with [`Init::prop`]: the host then encodes only
    /// those (ABI 1.1 `segd_props`), which makes batches smaller and faster
    /// to build. Any other property reads as absent.
    pub fn send_only_keys(&mut self) {
        *self.only_keys = true;
    }
}

/// Log levels (those of Go's log/slog).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// -4
    Debug = -4,
    /// 0
    Info = 0,
    /// 4
    Warn = 4,
    /// 8
    Error = 8,
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "segd")]
extern "C" {
    #[link_name = "log"]
    fn segd_log(level: i32, ptr: *const u8, len: usize);
}

/// Sends `msg` to the host's log at `level`. The host rate-limits plugin
/// logs and truncates lines to 1 KiB: do not log per item. Natively (tests)
/// it writes to stderr.
pub fn log(level: Level, msg: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the host reads len bytes at ptr during the call.
    unsafe {
        segd_log(level as i32, msg.as_ptr(), msg.len())
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("segd plugin log {:?}: {}", level, msg);
}

/// The state behind the exports of one instance; [`export!`] keeps one in
/// a static. Its methods are the ABI calls.
pub struct Runtime<P: Plugin> {
    buf: Vec<u64>,
    plugin: Option<P>,
    keys: Vec<String>,
    only_keys: bool,
    err: String,
    props: String,
}

impl<P: Plugin> Default for Runtime<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Plugin> Runtime<P> {
    /// A runtime with no plugin yet.
    pub fn new() -> Self {
        Runtime { buf: Vec::new(), plugin: None, keys: Vec::new(), only_keys: false, err: String::new(), props: String::new() }
    }

    /// `segd_alloc`: an 8-byte aligned buffer of `size` bytes, valid until
    /// the next call.
    pub fn alloc(&mut self, size: usize) -> *mut u8 {
        let words = (size + 7) / 8;
        if self.buf.len() < words {
            self.buf = vec![0; words];
        }
        self.buf.as_mut_ptr() as *mut u8
    }

    /// `ptr..ptr+len` if it lies inside the buffer, as an offset.
    fn region(&self, ptr: usize, len: usize) -> Option<usize> {
        let base = self.buf.as_ptr() as usize;
        let off = ptr.checked_sub(base)?;
        if off.checked_add(len)? <= self.buf.len() * 8 {
            Some(off)
        } else {
            None
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: a u64 buffer viewed as its bytes.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const u8, self.buf.len() * 8) }
    }

    fn fail(&mut self, msg: String) -> i32 {
        self.err = msg;
        1
    }

    /// `segd_init` with the parameters at `ptr`, written by the host into
    /// the buffer from [`Runtime::alloc`].
    pub fn init_at(&mut self, ptr: usize, len: usize) -> i32 {
        let params = match self.region(ptr, len) {
            Some(off) => self.bytes()[off..off + len].to_vec(),
            None if len == 0 => Vec::new(),
            None => return self.fail("segd: params outside the buffer from segd_alloc".into()),
        };
        match self.init(&params) {
            Ok(()) => 0,
            Err(e) => self.fail(e),
        }
    }

    /// Parses `params` (JSON; empty means `{}`) and builds the plugin.
    pub fn init(&mut self, params: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(params).map_err(|_| "params are not UTF-8".to_string())?;
        let text = if text.trim().is_empty() { "{}" } else { text };
        let json = Json::parse(text).map_err(|e| format!("params: {}", e))?;
        self.keys.clear();
        self.only_keys = false;
        let mut init = Init { params: &json, keys: &mut self.keys, only_keys: &mut self.only_keys };
        self.plugin = Some(P::init(&mut init)?);
        Ok(())
    }

    /// `segd_match` for the batch at `ptr` and the answer at `out`, both in
    /// the buffer from [`Runtime::alloc`].
    pub fn match_at(&mut self, ptr: usize, len: usize, out: usize) -> i32 {
        let off = match self.region(ptr, len) {
            Some(off) if len >= HEADER_SIZE => off,
            _ => return self.fail("segd: batch outside the buffer from segd_alloc".into()),
        };
        let n = u32::from_le_bytes([self.bytes()[off + 12], self.bytes()[off + 13], self.bytes()[off + 14], self.bytes()[off + 15]]) as usize;
        let words = (n + 63) / 64;
        let out_off = match self.region(out, 8 * words) {
            Some(o) if o % 8 == 0 && (o >= off + len || o + 8 * words <= off) => o / 8,
            _ => return self.fail("segd: answer outside the buffer, unaligned or overlapping the batch".into()),
        };
        // The batch and the answer are disjoint parts of buf; take them
        // apart so the plugin (also in self) can be borrowed mutably.
        let mut buf = std::mem::take(&mut self.buf);
        let result = {
            let (data, answer) = split(&mut buf, off, len, out_off, words);
            self.run(data, answer)
        };
        self.buf = buf;
        match result {
            Ok(()) => 0,
            Err(e) => self.fail(e),
        }
    }

    /// Judges one encoded batch with the plugin and writes the answer into
    /// `out` (at least `(n+63)/64` words). Natively, tests call it directly.
    pub fn run(&mut self, data: &[u8], out: &mut [u64]) -> Result<(), String> {
        let mut b = Batch::decode(data).map_err(|e| e.to_string())?;
        let plugin = self.plugin.as_mut().ok_or("segd: segd_match before segd_init")?;
        if out.len() < (b.len() + 63) / 64 {
            return Err(format!("segd: answer has {} words, {} items need {}", out.len(), b.len(), (b.len() + 63) / 64));
        }
        b.resolve(&self.keys);
        let mut bits = Bits::new(out, b.len());
        match b.kind() {
            EVENTS if P::KINDS & EVENTS != 0 => plugin.events(&b, &mut bits),
            PROFILES if P::KINDS & PROFILES != 0 => plugin.profiles(&b, &mut bits),
            EVENTS => Err("segd: this plugin does not judge events (Plugin::KINDS)".into()),
            PROFILES => Err("segd: this plugin does not judge profiles (Plugin::KINDS)".into()),
            k => Err(format!("segd: unknown batch kind {}", k)),
        }
    }

    /// The last failure's message (empty if none).
    pub fn last_error(&self) -> &str {
        &self.err
    }

    /// `segd_error`: `ptr<<32 | len` of the last failure's message (a
    /// 32-bit pointer: meaningful in WebAssembly only).
    pub fn error(&self) -> u64 {
        if self.err.is_empty() {
            return 0;
        }
        (self.err.as_ptr() as usize as u64) << 32 | self.err.len() as u64
    }

    /// The property names the plugin asked for with
    /// [`Init::send_only_keys`], or `None` for every property.
    pub fn declared_props(&self) -> Option<&[String]> {
        if self.only_keys {
            Some(&self.keys)
        } else {
            None
        }
    }

    /// `segd_props`: `ptr<<32 | len` of a JSON array of the declared keys
    /// (see [`Runtime::props_json`]), or 0 for "send every property".
    pub fn props(&mut self) -> u64 {
        if !self.only_keys {
            return 0;
        }
        self.props = self.props_json();
        (self.props.as_ptr() as usize as u64) << 32 | self.props.len() as u64
    }

    /// The declared keys as the JSON array `segd_props` answers.
    pub fn props_json(&self) -> String {
        let mut s = String::from("[");
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json_quote(&mut s, k);
        }
        s.push(']');
        s
    }
}

/// Splits buf into the batch bytes and the answer words.
fn split(buf: &mut [u64], off: usize, len: usize, out_word: usize, words: usize) -> (&[u8], &mut [u64]) {
    let ptr = buf.as_mut_ptr();
    // SAFETY: the caller checked that both regions lie inside buf and do
    // not overlap.
    unsafe {
        let data = std::slice::from_raw_parts((ptr as *const u8).add(off), len);
        let answer = std::slice::from_raw_parts_mut(ptr.add(out_word), words);
        (data, answer)
    }
}

/// Appends `s` to `out` as a JSON string.
fn json_quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Exports the ABI functions (`segd_abi_version`, `segd_kinds`,
/// `segd_alloc`, `segd_init`, `segd_match`, `segd_error`, `segd_props`) for
/// a type implementing [`Plugin`]. Call it once, at the top level of the
/// `cdylib` crate. Outside WebAssembly it exports nothing, so the crate's
/// native tests build.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static mut SEGD_RUNTIME: Option<$crate::Runtime<$plugin>> = None;

            fn runtime() -> &'static mut $crate::Runtime<$plugin> {
                // SAFETY: a WebAssembly instance has one thread, and the
                // host makes one call at a time.
                unsafe { SEGD_RUNTIME.get_or_insert_with($crate::Runtime::new) }
            }

            #[no_mangle]
            pub extern "C" fn segd_abi_version() -> u32 {
                $crate::ABI_VERSION
            }

            #[no_mangle]
            pub extern "C" fn segd_kinds() -> u32 {
                <$plugin as $crate::Plugin>::KINDS
            }

            #[no_mangle]
            pub extern "C" fn segd_alloc(size: usize) -> *mut u8 {
                runtime().alloc(size)
            }

            #[no_mangle]
            pub extern "C" fn segd_init(ptr: usize, len: usize) -> i32 {
                runtime().init_at(ptr, len)
            }

            #[no_mangle]
            pub extern "C" fn segd_match(ptr: usize, len: usize, out: usize) -> i32 {
                runtime().match_at(ptr, len, out)
            }

            #[no_mangle]
            pub extern "C" fn segd_error() -> u64 {
                runtime().error()
            }

            #[no_mangle]
            pub extern "C" fn segd_props() -> u64 {
                runtime().props()
            }
        };
    };
}
