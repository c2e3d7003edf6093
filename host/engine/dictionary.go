package engine

import "sync"

// dictionary maps external user ids to dense uint32 ids, handed out in order
// of first sight, so that bitmaps stay compact. Only the writer adds; it
// reads without the lock, and readers take the read lock.
type dictionary struct {
	mu    sync.RWMutex
	ids   map[string]uint32
	names []string
	// limit is the number of ids there is room for (MaxUsers; tests make
	// it small).
	limit uint64
}

func newDictionary() *dictionary {
	return &dictionary{ids: map[string]uint32{}, limit: MaxUsers}
}

// lookup returns the dense id of an external id, for readers.
func (d *dictionary) lookup(name string) (uint32, bool) {
	d.mu.RLock()
	id, ok := d.ids[name]
	d.mu.RUnlock()
	return id, ok
}

// tryLookup is lookup; with try it gives up at once (ok false) while the
// writer holds or waits for the lock, rather than wait.
func (d *dictionary) tryLookup(name string, try bool) (id uint32, found, ok bool) {
	if !try {
		id, found = d.lookup(name)
		return id, found, true
	}
	if !d.mu.TryRLock() {
		return 0, false, false
	}
	id, found = d.ids[name]
	d.mu.RUnlock()
	return id, found, true
}

// name returns the external id of a dense id, for readers.
func (d *dictionary) name(id uint32) string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.names[id]
}

// size returns the number of users, for readers.
func (d *dictionary) size() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.names)
}

// intern returns the dense ids of names, adding the new ones; it takes the
// write lock once, and only when there is something new. isNew is set for
// ids added by this call. A new name that finds the id space full gets no
// id: its position is in full, and its ids entry is meaningless. Writer
// only.
func (d *dictionary) intern(names []string, ids []uint32, isNew func(uint32)) (full []int) {
	first := len(names) // the first name without an id
	for i, n := range names {
		id, ok := d.ids[n]
		if !ok {
			first = i
			break
		}
		ids[i] = id
	}
	if first == len(names) {
		return nil
	}
	// The write lock is taken for internBatch new names at a time, so
	// that readers looking users up never wait for a whole upload of a
	// million new users to be interned. The names before first have
	// their ids: not looked up twice (while users are new, most batches
	// have one, and a map lookup per name was a twentieth of a step).
	d.mu.Lock()
	added := 0
	for i := first; i < len(names); i++ {
		n := names[i]
		id, ok := d.ids[n]
		if !ok {
			if uint64(len(d.names)) >= d.limit {
				full = append(full, i)
				continue
			}
			id = uint32(len(d.names))
			d.ids[n] = id
			d.names = append(d.names, n)
			isNew(id)
			if added++; added%internBatch == 0 {
				d.mu.Unlock()
				d.mu.Lock()
			}
		}
		ids[i] = id
	}
	d.mu.Unlock()
	return full
}

// internBatch is how many new names intern adds under one hold of the
// write lock.
const internBatch = 1024
