package sdk

import "unsafe"

// Batch is the whole batch being judged, for handlers registered with
// HandleEventBatch or HandleProfileBatch: they loop over the items
// themselves and read properties as columns, which is the fastest way to
// write a plugin (no call per item). Views returned by its methods alias the
// batch buffer and are valid only until the handler returns.
//
//	var amount = sdk.Prop("amount")
//	...
//	sdk.HandleEventBatch(func(b *sdk.Batch, out sdk.Bits) {
//		vals, types := b.Nums(amount)
//		for i, v := range vals {
//			if types[i] == sdk.Number && v > min {
//				out.Set(i)
//			}
//		}
//	})
type Batch struct{ b *batch }

// Len returns the number of items in the batch.
func (b *Batch) Len() int { return b.b.n }

// Now returns the host's clock for the batch, in Unix milliseconds.
func (b *Batch) Now() int64 { return b.b.now }

// Event returns item i as an Event (for event batches).
func (b *Batch) Event(i int) Event { return Event{b.b, i} }

// Profile returns item i as a Profile (for profile batches).
func (b *Batch) Profile(i int) Profile { return Profile{b.b, i} }

// User returns the external user id of item i.
func (b *Batch) User(i int) string { return b.b.str(b.b.users + 8*i) }

// Name returns the event name of item i ("" for profiles).
func (b *Batch) Name(i int) string { return b.b.str(b.b.names + 8*i) }

// Times returns the event times (Unix milliseconds; zero for profiles), one
// per item.
func (b *Batch) Times() []int64 {
	n := b.b.n
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(&b.b.data[b.b.times])), n)
}

// Types returns the type tags of property k, one per item (all Absent when
// no item has it).
func (b *Batch) Types(k Key) []Type { return b.b.cols[k.id].t }

// Nums returns the column of property k as numbers: vals[i] is item i's
// value where types[i] == Number, and meaningless otherwise. Both slices have
// one entry per item.
func (b *Batch) Nums(k Key) (vals []float64, types []Type) {
	c := &b.b.cols[k.id]
	return unsafe.Slice((*float64)(unsafe.Pointer(unsafe.SliceData(c.v))), len(c.v)), c.t
}

// Str returns property k of item i as a string, or "" if it is not one.
func (b *Batch) Str(k Key, i int) string { s, _ := b.b.strOf(k, i); return s }

// JSON returns property k of item i as JSON text if it is nested, or nil.
func (b *Batch) JSON(k Key, i int) []byte { return b.b.jsonOf(k, i) }

// Bits is the answer of a batch handler: bit i set means item i matches. It
// comes zeroed.
type Bits []uint64

// Set marks item i as matching.
func (o Bits) Set(i int) { o[uint(i)>>6] |= 1 << (uint(i) & 63) }

// Has reports whether item i is marked.
func (o Bits) Has(i int) bool { return o[uint(i)>>6]&(1<<(uint(i)&63)) != 0 }
