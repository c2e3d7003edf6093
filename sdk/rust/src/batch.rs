//! The columnar batch of ABI.md ("Batch layout"), read in place.

use std::fmt;

/// Bytes of the batch header.
pub const HEADER_SIZE: usize = 64;
/// First four bytes of every batch: `"SGB1"`.
pub const MAGIC: u32 = 0x3142_4753;

/// The type tag of one property value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// The item has no such property (or the batch has no such key).
    Absent,
    /// JSON `null`.
    Null,
    /// `false`.
    False,
    /// `true`.
    True,
    /// A float64.
    Number,
    /// A UTF-8 string.
    String,
    /// A nested array or object, as JSON text.
    Json,
}

impl Type {
    fn from_tag(t: u8) -> Type {
        match t {
            1 => Type::Null,
            2 => Type::False,
            3 => Type::True,
            4 => Type::Number,
            5 => Type::String,
            6 => Type::Json,
            _ => Type::Absent,
        }
    }
}

/// Why a batch could not be read (the host never sends one, but the SDK
/// checks every offset rather than trust them).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchError(pub String);

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segd: malformed batch: {}", self.0)
    }
}

impl std::error::Error for BatchError {}

fn u32_at(d: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&d[off..off + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(d: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[off..off + 8]);
    u64::from_le_bytes(b)
}

/// A batch of events or profiles, decoded in place: nothing is copied, and
/// every view it hands out borrows the batch buffer.
pub struct Batch<'a> {
    data: &'a [u8],
    kind: u32,
    n: usize,
    k: usize,
    now: i64,
    users: usize,
    names: usize,
    times: usize,
    keys: usize,
    types: usize,
    values: usize,
    cols: Vec<Column<'a>>,
}

impl<'a> Batch<'a> {
    /// Validates the header of `data` and the bounds of every column.
    pub fn decode(data: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        if data.len() < HEADER_SIZE {
            return Err(BatchError(format!("{} bytes, shorter than the {}-byte header", data.len(), HEADER_SIZE)));
        }
        let magic = u32_at(data, 0);
        if magic != MAGIC {
            return Err(BatchError(format!("magic {:#x}, want {:#x}", magic, MAGIC)));
        }
        let version = u32_at(data, 4);
        if version >> 16 != crate::ABI_MAJOR {
            return Err(BatchError(format!(
                "ABI major {}, this SDK speaks {}",
                version >> 16,
                crate::ABI_MAJOR
            )));
        }
        let total = u32_at(data, 28) as usize;
        if total != data.len() {
            return Err(BatchError(format!("header says {} bytes, buffer has {}", total, data.len())));
        }
        let h = |off| u32_at(data, off) as usize;
        let b = Batch {
            data,
            kind: u32_at(data, 8),
            n: h(12),
            k: h(24),
            now: u64_at(data, 16) as i64,
            users: h(32),
            names: h(36),
            times: h(40),
            keys: h(44),
            types: h(48),
            values: h(52),
            cols: Vec::new(),
        };
        let (n, k) = (b.n as u64, b.k as u64);
        for (name, off, len) in [
            ("users", b.users, 8 * n),
            ("names", b.names, 8 * n),
            ("times", b.times, 8 * n),
            ("keys", b.keys, 8 * k),
            ("types", b.types, k * n),
            ("values", b.values, 8 * k * n),
            ("heap", h(56), h(60) as u64),
        ] {
            if off < HEADER_SIZE || off as u64 + len > data.len() as u64 {
                return Err(BatchError(format!(
                    "column {} [{}, +{}) outside the {}-byte batch",
                    name,
                    off,
                    len,
                    data.len()
                )));
            }
        }
        for j in 0..b.k {
            b.ref_at(b.keys + 8 * j)?;
        }
        Ok(b)
    }

    /// Resolves `names` once, so that [`Item::num_of`] and friends read
    /// `Key(i)` (the index of a name in `names`) with no lookup.
    pub fn resolve(&mut self, names: &[String]) {
        let cols: Vec<Column<'a>> = names.iter().map(|name| self.column(name)).collect();
        self.cols = cols;
    }

    /// `batch::KIND_EVENTS` or `batch::KIND_PROFILES`.
    pub fn kind(&self) -> u32 {
        self.kind
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The host's clock for this batch, Unix milliseconds. The guest's own
    /// clock is fake: use this for anything time-relative.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Reads a string reference at `off`, checking it against the batch.
    fn ref_at(&self, off: usize) -> Result<&'a [u8], BatchError> {
        let r = u64_at(self.data, off);
        slice_ref(self.data, r).ok_or_else(|| BatchError(format!("string reference at {} outside the batch", off)))
    }

    /// The bytes of a string reference, or empty when it is out of bounds.
    fn bytes_at(&self, off: usize) -> &'a [u8] {
        self.ref_at(off).unwrap_or(&[])
    }

    /// The property names in this batch (in no particular order).
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        (0..self.k).map(move |j| std::str::from_utf8(self.bytes_at(self.keys + 8 * j)).unwrap_or(""))
    }

    /// The external user id of item `i`.
    pub fn user(&self, i: usize) -> &'a str {
        std::str::from_utf8(self.bytes_at(self.users + 8 * i)).unwrap_or("")
    }

    /// The event name of item `i` (empty for profiles).
    pub fn name(&self, i: usize) -> &'a str {
        std::str::from_utf8(self.bytes_at(self.names + 8 * i)).unwrap_or("")
    }

    /// The event time of item `i`, Unix milliseconds (0 for profiles).
    pub fn time(&self, i: usize) -> i64 {
        u64_at(self.data, self.times + 8 * i) as i64
    }

    /// The column of property `name`: one type tag and one value per item
    /// (all [`Type::Absent`] when the batch lacks the key). Look a column up
    /// once per batch, then read it per item.
    pub fn column(&self, name: &str) -> Column<'a> {
        for j in 0..self.k {
            if self.bytes_at(self.keys + 8 * j) == name.as_bytes() {
                let n = self.n;
                return Column {
                    data: self.data,
                    types: &self.data[self.types + j * n..self.types + (j + 1) * n],
                    values: &self.data[self.values + 8 * j * n..self.values + 8 * (j + 1) * n],
                };
            }
        }
        Column { data: self.data, types: &[], values: &[] }
    }

    /// The column resolved for `key` (see [`Batch::resolve`]).
    pub fn col(&self, key: Key) -> &Column<'a> {
        &self.cols[key.0]
    }

    /// Item `i` as a value with per-item accessors.
    pub fn item(&self, i: usize) -> Item<'_, 'a> {
        Item { b: self, i }
    }
}

/// A string reference (u32 offset, u32 length) into `data`, checked.
fn slice_ref(data: &[u8], r: u64) -> Option<&[u8]> {
    let (p, l) = ((r & 0xffff_ffff) as usize, (r >> 32) as usize);
    data.get(p..p.checked_add(l)?)
}

/// A property name resolved once per batch; the index of the name in the
/// list given to [`crate::Init::prop`] (or to [`Batch::resolve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(pub usize);

/// One property's column in a batch. Reads are bounds-checked; an item
/// index past the end reads as [`Type::Absent`].
#[derive(Clone, Copy)]
pub struct Column<'a> {
    data: &'a [u8],
    types: &'a [u8],
    values: &'a [u8],
}

impl<'a> Column<'a> {
    /// Whether the batch carries the property at all.
    pub fn present(&self) -> bool {
        !self.types.is_empty()
    }

    /// The type of item `i`'s value.
    pub fn typ(&self, i: usize) -> Type {
        self.types.get(i).map_or(Type::Absent, |t| Type::from_tag(*t))
    }

    /// The raw type tags, one per item (empty when the batch lacks the key).
    pub fn tags(&self) -> &'a [u8] {
        self.types
    }

    fn slot(&self, i: usize) -> u64 {
        u64_at(self.values, 8 * i)
    }

    /// Item `i`'s value if it is a number.
    #[inline]
    pub fn num(&self, i: usize) -> Option<f64> {
        if self.types.get(i) == Some(&4) {
            Some(f64::from_bits(self.slot(i)))
        } else {
            None
        }
    }

    /// Every item's value as a number (`None` where it is not one), in item
    /// order: the fast way to scan a numeric column.
    pub fn nums(&self) -> impl Iterator<Item = Option<f64>> + 'a {
        self.types.iter().zip(self.values.chunks_exact(8)).map(|(t, v)| {
            if *t == 4 {
                let mut b = [0u8; 8];
                b.copy_from_slice(v);
                Some(f64::from_le_bytes(b))
            } else {
                None
            }
        })
    }

    /// Item `i`'s value if it is a boolean.
    pub fn bool(&self, i: usize) -> Option<bool> {
        match self.types.get(i) {
            Some(2) => Some(false),
            Some(3) => Some(true),
            _ => None,
        }
    }

    /// Item `i`'s value if it is a string, as bytes (no UTF-8 check).
    pub fn bytes(&self, i: usize) -> Option<&'a [u8]> {
        if self.types.get(i) == Some(&5) {
            slice_ref(self.data, self.slot(i))
        } else {
            None
        }
    }

    /// Item `i`'s value if it is a (UTF-8) string.
    pub fn str(&self, i: usize) -> Option<&'a str> {
        self.bytes(i).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Item `i`'s value as JSON text if it is a nested array or object.
    pub fn json(&self, i: usize) -> Option<&'a str> {
        if self.types.get(i) == Some(&6) {
            slice_ref(self.data, self.slot(i)).and_then(|b| std::str::from_utf8(b).ok())
        } else {
            None
        }
    }
}

/// One event or profile of a batch, for per-item handlers. Reading by name
/// searches the batch's key table each time; reading by [`Key`] is an index.
#[derive(Clone, Copy)]
pub struct Item<'b, 'a> {
    b: &'b Batch<'a>,
    i: usize,
}

impl<'b, 'a> Item<'b, 'a> {
    /// The item's index in the batch.
    pub fn index(&self) -> usize {
        self.i
    }
    /// The external user id.
    pub fn user(&self) -> &'a str {
        self.b.user(self.i)
    }
    /// The event name (empty for profiles).
    pub fn name(&self) -> &'a str {
        self.b.name(self.i)
    }
    /// The event time, Unix milliseconds (0 for profiles).
    pub fn time(&self) -> i64 {
        self.b.time(self.i)
    }
    /// The host's clock for the batch, Unix milliseconds.
    pub fn now(&self) -> i64 {
        self.b.now
    }
    /// The type of property `name`.
    pub fn typ(&self, name: &str) -> Type {
        self.b.column(name).typ(self.i)
    }
    /// Whether the item has property `name` (even `null`).
    pub fn has(&self, name: &str) -> bool {
        self.typ(name) != Type::Absent
    }
    /// Property `name` if it is a number.
    pub fn num(&self, name: &str) -> Option<f64> {
        self.b.column(name).num(self.i)
    }
    /// Property `name` if it is a string.
    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.b.column(name).str(self.i)
    }
    /// Property `name` if it is a boolean.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.b.column(name).bool(self.i)
    }
    /// Property `name` as JSON text if it is nested.
    pub fn json(&self, name: &str) -> Option<&'a str> {
        self.b.column(name).json(self.i)
    }
    /// The type of property `k`.
    pub fn typ_of(&self, k: Key) -> Type {
        self.b.cols[k.0].typ(self.i)
    }
    /// Property `k` if it is a number.
    #[inline]
    pub fn num_of(&self, k: Key) -> Option<f64> {
        self.b.cols[k.0].num(self.i)
    }
    /// Property `k` if it is a string.
    pub fn str_of(&self, k: Key) -> Option<&'a str> {
        self.b.cols[k.0].str(self.i)
    }
    /// Property `k` if it is a string, as bytes (no UTF-8 check).
    pub fn bytes_of(&self, k: Key) -> Option<&'a [u8]> {
        self.b.cols[k.0].bytes(self.i)
    }
    /// Property `k` if it is a boolean.
    pub fn bool_of(&self, k: Key) -> Option<bool> {
        self.b.cols[k.0].bool(self.i)
    }
    /// Property `k` as JSON text if it is nested.
    pub fn json_of(&self, k: Key) -> Option<&'a str> {
        self.b.cols[k.0].json(self.i)
    }
}

/// The answer to a batch: bit `i` set means item `i` matches. It comes
/// zeroed.
pub struct Bits<'o> {
    words: &'o mut [u64],
    n: usize,
}

impl<'o> Bits<'o> {
    /// Wraps `words` (at least `(n+63)/64` of them) as the answer for `n`
    /// items, zeroing them.
    pub fn new(words: &'o mut [u64], n: usize) -> Bits<'o> {
        let w = (n + 63) / 64;
        assert!(words.len() >= w, "segd: {} answer words for {} items", words.len(), n);
        let words = &mut words[..w];
        for x in words.iter_mut() {
            *x = 0;
        }
        Bits { words, n }
    }
    /// Marks item `i` as matching (ignored past the last item).
    #[inline]
    pub fn set(&mut self, i: usize) {
        if i < self.n {
            self.words[i >> 6] |= 1 << (i & 63);
        }
    }
    /// Whether item `i` is marked.
    pub fn has(&self, i: usize) -> bool {
        i < self.n && self.words[i >> 6] & (1 << (i & 63)) != 0
    }
    /// Number of items.
    pub fn len(&self) -> usize {
        self.n
    }
    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}
