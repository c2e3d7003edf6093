package engine

import (
	"fmt"
	"slices"

	"github.com/segd/segd/host/internal/snapio"
)

// profileStore keeps the users' profile attributes packed: an attribute
// name is stored once, in a dictionary, and a user's profile is one byte
// string of (attribute id, value) pairs in id order, values in the
// snapshot encoding (snapio.Writer.Any). A float attribute costs about ten
// bytes and the slice header where a map cost hundreds. Predicates still
// see maps: profileSource decodes the profiles a batch touches, and only
// those. A user's bytes are never changed, only replaced, so that a
// snapshot can share them (chunked). Writer only.
type profileStore struct {
	ids   map[string]uint32 // attribute name → id
	names []string          // id → attribute name
	// packed[u] is user u's profile; nil: none (the user never had a
	// profile update), empty: a profile whose attributes were removed.
	packed chunked[[]byte]
	// scratch is the buffer merge encodes in.
	scratch []byte
}

func newProfileStore() *profileStore { return &profileStore{ids: map[string]uint32{}} }

// has reports whether user u has a profile.
func (p *profileStore) has(u uint32) bool { return p.packed.get(u) != nil }

// profile decodes user u's profile; nil if there is none.
func (p *profileStore) profile(u uint32) map[string]any {
	b := p.packed.get(u)
	if b == nil {
		return nil
	}
	m, err := decodeProfile(b, p.names)
	if err != nil {
		// The bytes were encoded here or checked at Restore.
		panic(fmt.Sprintf("engine: profile of user %d: %v", u, err))
	}
	return m
}

// attr is one attribute of a decoded profile.
type attr struct {
	id uint32
	v  any
}

func decodeAttrs(b []byte, attrs []attr) ([]attr, error) {
	r := snapio.NewReader(b)
	for r.Err == nil && r.Left() > 0 {
		id := r.Uvarint()
		v := r.Any()
		attrs = append(attrs, attr{uint32(id), v})
	}
	return attrs, r.Err
}

func decodeProfile(b []byte, names []string) (map[string]any, error) {
	r := snapio.NewReader(b)
	m := map[string]any{}
	for r.Err == nil && r.Left() > 0 {
		id := r.Uvarint()
		v := r.Any()
		if id >= uint64(len(names)) {
			return nil, fmt.Errorf("attribute id %d of %d", id, len(names))
		}
		m[names[id]] = v
	}
	return m, r.Err
}

// merge applies a profile update to user u: attributes set, nil removes
// one. A value that cannot be stored (not a JSON value) is left out and
// reported in the error; the rest of the update applies.
func (p *profileStore) merge(u uint32, update map[string]any) error {
	attrs, err := decodeAttrs(p.packed.get(u), nil)
	if err != nil {
		return err
	}
	var bad error
	// New names get ids in name order, not the map's: equal states must
	// encode to equal bytes.
	var added []string
	for k, v := range update {
		if _, ok := p.ids[k]; !ok && v != nil {
			added = append(added, k)
		}
	}
	slices.Sort(added)
	for _, k := range added {
		p.ids[k] = uint32(len(p.names))
		p.names = append(p.names, k)
	}
	for k, v := range update {
		id, ok := p.ids[k]
		if !ok {
			continue // removing what was never set
		}
		i, found := slices.BinarySearchFunc(attrs, id, func(a attr, id uint32) int { return int(a.id) - int(id) })
		switch {
		case v == nil && found:
			attrs = slices.Delete(attrs, i, i+1)
		case v == nil:
		case found:
			attrs[i].v = v
		default:
			attrs = slices.Insert(attrs, i, attr{id, v})
		}
	}
	w := snapio.Writer{Buf: p.scratch[:0]}
	for _, a := range attrs {
		mark := len(w.Buf)
		w.Uvarint(uint64(a.id))
		if err := w.Any(a.v); err != nil {
			w.Buf = w.Buf[:mark]
			if bad == nil {
				bad = fmt.Errorf("profile attribute %q: %w", p.names[a.id], err)
			}
		}
	}
	p.scratch = w.Buf
	// A copy of the exact size: the user's bytes live as long as segd.
	p.packed.set(u, append(make([]byte, 0, len(w.Buf)), w.Buf...))
	return bad
}

// profileSource gives the leaves the profiles of a batch's users.
type profileSource interface {
	// has reports whether user u has a profile.
	has(u uint32) bool
	// profile returns user u's attributes (nil: no profile); not to be
	// changed.
	profile(u uint32) map[string]any
}

// batchProfiles decodes each profile once per batch: several profile
// rules read the same users.
type batchProfiles struct {
	store   *profileStore
	decoded map[uint32]map[string]any
}

func (b *batchProfiles) has(u uint32) bool { return b.store.has(u) }

func (b *batchProfiles) profile(u uint32) map[string]any {
	if m, ok := b.decoded[u]; ok {
		return m
	}
	m := b.store.profile(u)
	if b.decoded == nil {
		b.decoded = map[uint32]map[string]any{}
	}
	b.decoded[u] = m
	return m
}

// write encodes n users' profiles as of a share (see capture).
func writeProfiles(w *snapio.Writer, names []string, packed frozenChunks[[]byte], n int) {
	w.Uvarint(uint64(len(names)))
	for _, k := range names {
		w.String(k)
	}
	w.Uvarint(uint64(n))
	for u := range uint32(n) {
		b := packed.get(u)
		w.Bool(b != nil)
		if b != nil {
			w.Bytes(b)
		}
	}
}

// readProfiles reads what writeProfiles wrote for n users, checking every
// profile decodes.
func readProfiles(r *snapio.Reader, n int) (*profileStore, error) {
	p := newProfileStore()
	na := r.Len(1)
	p.names = make([]string, na)
	for i := range p.names {
		p.names[i] = r.String()
		p.ids[p.names[i]] = uint32(i)
	}
	if r.Err != nil {
		return nil, r.Err
	}
	if len(p.ids) != len(p.names) {
		return nil, fmt.Errorf("profiles: repeated attribute name")
	}
	if np := r.Len(1); np != n {
		if r.Err != nil {
			return nil, r.Err
		}
		return nil, fmt.Errorf("%d profiles for %d users", np, n)
	}
	var check []attr
	for u := range uint32(n) {
		if !r.Bool() {
			continue
		}
		b := r.Bytes()
		if r.Err != nil {
			return nil, r.Err
		}
		var err error
		if check, err = decodeAttrs(b, check[:0]); err != nil {
			return nil, fmt.Errorf("profile of user %d: %w", u, err)
		}
		for _, a := range check {
			if a.id >= uint32(na) {
				return nil, fmt.Errorf("profile of user %d: attribute id %d of %d", u, a.id, na)
			}
		}
		if b == nil {
			b = []byte{}
		}
		p.packed.set(u, b)
	}
	return p, r.Err
}
