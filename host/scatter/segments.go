package scatter

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/setexpr"
)

// SegmentDetail implements bus.SegmentStore: the partitions' descriptions
// merged as in Segments, the definition of the partition with the lowest
// revision, and the latest change of any partition.
func (s *Scatter) SegmentDetail(segment string) (api.SegmentGetReply, error) {
	reps := make([]api.SegmentGetReply, len(s.parts))
	err := s.eachQuick(func(_ context.Context, i int, p Part) error {
		var err error
		reps[i], err = p.SegmentDetail(segment)
		return err
	})
	if err != nil || len(s.parts) == 1 {
		return reps[0], err
	}
	infos := make([]*api.SegmentInfo, len(reps))
	out := reps[0]
	var updated time.Time
	for i := range reps {
		infos[i] = &reps[i].SegmentInfo
		if reps[i].Revision < out.Revision {
			out.Definition = reps[i].Definition
		}
		if t, err := time.Parse(time.RFC3339, reps[i].Updated); err == nil && t.After(updated) {
			updated, out.Updated = t, reps[i].Updated
		}
	}
	out.SegmentInfo = mergeInfo(infos)
	return out, nil
}

// SegmentStatic implements bus.SegmentStore. Every partition has the same
// rules: partition 0 answers.
func (s *Scatter) SegmentStatic(segment string) (bool, error) {
	static, err := s.parts[0].SegmentStatic(segment)
	return static, s.partErr(0, err)
}

// SegmentPage implements bus.SegmentStore over global ids: up to limit
// members with global ids >= from, ascending. Each partition is asked for
// up to limit of its members from where from falls in it (firstLocal);
// the smallest limit of their union are the page, since a partition's
// ids keep their order as global ids.
func (s *Scatter) SegmentPage(segment string, from uint32, limit int) ([]uint32, bool, error) {
	if len(s.parts) == 1 {
		return s.parts[0].SegmentPage(segment, from, limit)
	}
	n := len(s.parts)
	pages := make([][]uint32, n)
	mores := make([]bool, n)
	err := s.each(context.Background(), func(_ context.Context, i int, p Part) error {
		l, ok := firstLocal(from, i, n)
		if !ok {
			// Nothing of this partition is at or past from; still ask,
			// so that an unknown or unserved segment is an error.
			_, err := p.SegmentCount(segment)
			return err
		}
		ids, more, err := p.SegmentPage(segment, l, limit)
		if err != nil {
			return err
		}
		for j, id := range ids {
			if uint64(id) >= MaxUsers(n) {
				return fmt.Errorf("local id %d is past the %d users a partition of %d can hold", id, MaxUsers(n), n)
			}
			ids[j] = GlobalID(id, i, n)
		}
		pages[i], mores[i] = ids, more
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	var all []uint32
	more := false
	for i := range pages {
		all = append(all, pages[i]...)
		more = more || mores[i]
	}
	slices.Sort(all)
	if len(all) > limit {
		all, more = all[:limit], true
	}
	return all, more, nil
}

// SegmentBitmaps implements bus.SegmentStore with global ids: the
// partitions' members, each partition's taken at one instant, and the
// number of users seen. With more than one partition that number is not a
// universe of global ids (they are not 0..n-1): set algebra with `!` over
// several partitions needs SegmentQuery.
func (s *Scatter) SegmentBitmaps(segments []string) ([]*roaring.Bitmap, uint32, error) {
	if len(s.parts) == 1 {
		return s.parts[0].SegmentBitmaps(segments)
	}
	n := len(s.parts)
	sets := make([][]*roaring.Bitmap, n)
	users := make([]uint32, n)
	err := s.each(context.Background(), func(_ context.Context, i int, p Part) error {
		bms, u, err := p.SegmentBitmaps(segments)
		if err != nil {
			return err
		}
		if uint64(u) > MaxUsers(n) {
			return fmt.Errorf("%d users are past the %d a partition of %d can hold", u, MaxUsers(n), n)
		}
		for j, bm := range bms {
			bms[j] = toGlobal(bm, i, n)
		}
		sets[i], users[i] = bms, u
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	out := make([]*roaring.Bitmap, len(segments))
	col := make([]*roaring.Bitmap, n)
	var universe uint64
	for j := range segments {
		for i := range sets {
			col[i] = sets[i][j]
		}
		out[j] = roaring.FastOr(col...)
	}
	for _, u := range users {
		universe += uint64(u)
	}
	return out, uint32(min(universe, 1<<32-1)), nil
}

// SegmentQuery evaluates set algebra over every partition's users: each
// partition evaluates q over its own members and universe (its users),
// and the results, in global ids, are joined. Users are disjoint, so this
// is q over all users — also with `!`, whose universe of global ids is
// not a range SegmentBitmaps could describe.
func (s *Scatter) SegmentQuery(ctx context.Context, q *setexpr.Expr) (*roaring.Bitmap, error) {
	n := len(s.parts)
	res := make([]*roaring.Bitmap, n)
	names := q.Names()
	err := s.each(ctx, func(ctx context.Context, i int, p Part) error {
		bms, u, err := p.SegmentBitmaps(names)
		if err != nil {
			return err
		}
		if uint64(u) > MaxUsers(n) {
			return fmt.Errorf("%d users are past the %d a partition of %d can hold", u, MaxUsers(n), n)
		}
		m := make(map[string]*roaring.Bitmap, len(bms))
		for j, name := range names {
			m[name] = bms[j]
		}
		r, err := q.Eval(ctx, m, uint64(u))
		if err != nil {
			return err
		}
		res[i] = toGlobal(r, i, n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 1 {
		return res[0], nil
	}
	return roaring.FastOr(res...), nil
}

// toGlobal turns a bitmap of partition p's local ids into global ids (the
// same bitmap when n = 1). A block of 2^16 local ids is one roaring
// container and stays one: each block is moved whole to its global block
// (a copy of its container under another key), never id by id.
func toGlobal(bm *roaring.Bitmap, p, n int) *roaring.Bitmap {
	if n == 1 || bm.IsEmpty() {
		return bm
	}
	lo, hi := bm.Minimum()>>blockBits, bm.Maximum()>>blockBits
	shift := func(k uint32) int64 { return int64(GlobalID(k<<blockBits, p, n)) - int64(k<<blockBits) }
	if lo == hi {
		return roaring.AddOffset64(bm, shift(lo))
	}
	out, mask := roaring.New(), roaring.New()
	for k := lo; k <= hi; k++ {
		mask.Clear()
		mask.AddRange(uint64(k)<<blockBits, uint64(k+1)<<blockBits)
		if block := roaring.And(bm, mask); !block.IsEmpty() {
			out.Or(roaring.AddOffset64(block, shift(k)))
		}
	}
	return out
}

// UserNames implements bus.SegmentStore: each partition names its users'
// global ids; a partition that cannot makes the answer its error.
func (s *Scatter) UserNames(ids []uint32) ([]string, error) {
	if len(s.parts) == 1 {
		return s.parts[0].UserNames(ids)
	}
	n := len(s.parts)
	local := make([][]uint32, n)
	at := make([][]int, n) // at[p][j]: where local[p][j]'s name goes
	for k, g := range ids {
		l, p := Split(g, n)
		local[p] = append(local[p], l)
		at[p] = append(at[p], k)
	}
	out := make([]string, len(ids))
	err := s.eachQuick(func(_ context.Context, i int, p Part) error {
		if len(local[i]) == 0 {
			return nil
		}
		names, err := p.UserNames(local[i])
		if err != nil {
			return err
		}
		if len(names) != len(local[i]) {
			return fmt.Errorf("%d names for %d ids", len(names), len(local[i]))
		}
		for j, name := range names {
			out[at[i][j]] = name
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// History implements bus.SegmentStore: each day's size, entries and exits
// are the partitions' sums. The partitions must answer the same days (they
// cap at today by one clock); if not, the day turned between their
// answers, and the merge is a 503 to retry rather than a partial day.
func (s *Scatter) History(segment string, from, to time.Time) ([]api.HistoryDay, error) {
	hs := make([][]api.HistoryDay, len(s.parts))
	err := s.eachQuick(func(_ context.Context, i int, p Part) error {
		var err error
		hs[i], err = p.History(segment, from, to)
		return err
	})
	if err != nil || len(s.parts) == 1 {
		return hs[0], err
	}
	out := slices.Clone(hs[0])
	for p, h := range hs[1:] {
		if err := sameDays(len(out), len(h), func(i int) bool { return out[i].Day == h[i].Day }); err != nil {
			return nil, s.partErr(p+1, err)
		}
		for i, d := range h {
			out[i].Size += d.Size
			out[i].Entered += d.Entered
			out[i].Left += d.Left
		}
	}
	return out, nil
}

// sameDays checks that a partition's days match partition 0's.
func sameDays(want, got int, same func(int) bool) error {
	if want != got {
		return unavailable("answered %d days where partition 0 answered %d: the day turned while the partitions answered; ask again", got, want)
	}
	for i := range want {
		if !same(i) {
			return unavailable("answered other days than partition 0: the day turned while the partitions answered; ask again")
		}
	}
	return nil
}

// HistoryStart is the first day any partition recorded for segment (what
// one engine over every user would have recorded first), "" when none.
func (s *Scatter) HistoryStart(segment string) string {
	first := ""
	for _, p := range s.parts {
		if d := p.HistoryStart(segment); d != "" && (first == "" || d < first) {
			first = d
		}
	}
	return first
}

// Location implements bus.SegmentStore: every partition's time zone.
func (s *Scatter) Location() *time.Location { return s.parts[0].Location() }

// Now implements bus.SegmentStore: partition 0's clock (one clock per
// stream).
func (s *Scatter) Now() time.Time { return s.parts[0].Now() }
