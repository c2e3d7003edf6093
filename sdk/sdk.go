package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Log levels for Log, the values of log/slog.
const (
	LevelDebug = -4
	LevelInfo  = 0
	LevelWarn  = 4
	LevelError = 8
)

var (
	eventHandler   func(Event) bool
	profileHandler func(Profile) bool
	eventBatch     func(*Batch, Bits)
	profileBatch   func(*Batch, Bits)
	initFuncs      []func() error
	params         []byte
	cur            batch
	onlyKeys       bool
)

// SendOnlyKeys tells the host that the plugin reads properties (profile
// attributes) only through the Keys it registers with Prop, including those
// registered in OnInit callbacks from the rule's parameters. The host then
// encodes only those properties into batches, which makes them smaller and
// faster to build: with six properties per event and one of them read, a
// batch costs about a third. A property the plugin then reads by a name it
// did not register is Absent. Call it from an init function. (ABI 1.1:
// segd_props; a manifest's props list still caps what is sent.)
func SendOnlyKeys() { onlyKeys = true }

// DeclaredProps returns the property names the plugin asked the host for
// with SendOnlyKeys (every Key registered so far), and false when it did not
// call SendOnlyKeys and every property is sent.
func DeclaredProps() ([]string, bool) {
	if !onlyKeys {
		return nil, false
	}
	return append([]string{}, keyNames...), true
}

// HandleEvents registers the event predicate: f is called once per event of
// each batch and reports whether the event matches. Call it from an init
// function. Registering makes the plugin usable in event conditions.
func HandleEvents(f func(Event) bool) { eventHandler, eventBatch = f, nil }

// HandleProfiles registers the profile predicate: f is called once per user
// profile of each batch. Call it from an init function.
func HandleProfiles(f func(Profile) bool) { profileHandler, profileBatch = f, nil }

// HandleEventBatch registers the event predicate as a function over the
// whole batch: f sets the bit of every matching event in out (which comes
// zeroed). It replaces a HandleEvents handler. This is the fast path: f loops
// over columns itself (see Batch) instead of being called once per event.
func HandleEventBatch(f func(b *Batch, out Bits)) { eventBatch, eventHandler = f, nil }

// HandleProfileBatch is HandleEventBatch for profile predicates.
func HandleProfileBatch(f func(b *Batch, out Bits)) { profileBatch, profileHandler = f, nil }

// OnInit registers f to run once per instance, after the host has handed in
// the rule's parameters (read them with Params) and before the first batch.
// An error rejects the parameters: the host reports it where the rule is
// compiled. Several callbacks run in registration order.
func OnInit(f func() error) { initFuncs = append(initFuncs, f) }

// Params decodes the rule's parameters (a JSON object) into v. It is meant
// for OnInit callbacks; before init it decodes an empty object.
func Params(v any) error {
	p := params
	if len(p) == 0 {
		p = []byte("{}")
	}
	if err := json.Unmarshal(p, v); err != nil {
		return fmt.Errorf("params: %w", err)
	}
	return nil
}

// RawParams returns the rule's parameters as JSON text.
func RawParams() []byte { return params }

// Now returns the host's clock for the batch being judged, in Unix
// milliseconds. The guest has no real clock of its own: use Now, not
// time.Now, for anything time-relative.
func Now() int64 { return cur.now }

// Log sends a message to the host's log at level (LevelInfo, ...). The host
// rate-limits plugin logs and drops lines over the limit, so do not log per
// event.
func Log(level int, msg string) { hostLog(int32(level), msg) }

// Logf formats and logs a message at LevelInfo.
func Logf(format string, args ...any) { Log(LevelInfo, fmt.Sprintf(format, args...)) }

// initParams stores p and runs the OnInit callbacks.
func initParams(p []byte) error {
	params = append([]byte(nil), p...)
	if len(params) > 0 && !json.Valid(params) {
		return errors.New("params are not valid JSON")
	}
	for _, f := range initFuncs {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// Run judges one encoded batch (ABI v1 layout) with the registered handler
// and sets bit i of out for every matching item. out must have room for
// (n+63)/64 words; it is zeroed first. The host calls it through the
// segd_match export; plugin tests may call it natively.
func Run(data []byte, out []uint64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in handler: %v", r)
		}
	}()
	b := &cur
	if err := b.decode(data); err != nil {
		return err
	}
	words := (b.n + 63) / 64
	if len(out) < words {
		return fmt.Errorf("sdk: answer has %d words, %d items need %d", len(out), b.n, words)
	}
	clear(out[:words])
	switch b.kind {
	case KindEvents:
		if f := eventBatch; f != nil {
			f(&Batch{b}, Bits(out[:words]))
			return nil
		}
		h := eventHandler
		if h == nil {
			return fmt.Errorf("sdk: this plugin has no event handler (register one with sdk.HandleEvents)")
		}
		for i := 0; i < b.n; i++ {
			if h(Event{b, i}) {
				out[i>>6] |= 1 << (uint(i) & 63)
			}
		}
	case KindProfiles:
		if f := profileBatch; f != nil {
			f(&Batch{b}, Bits(out[:words]))
			return nil
		}
		h := profileHandler
		if h == nil {
			return fmt.Errorf("sdk: this plugin has no profile handler (register one with sdk.HandleProfiles)")
		}
		for i := 0; i < b.n; i++ {
			if h(Profile{b, i}) {
				out[i>>6] |= 1 << (uint(i) & 63)
			}
		}
	default:
		return fmt.Errorf("sdk: unknown batch kind %d", b.kind)
	}
	return nil
}

// Init runs the OnInit callbacks with params (JSON). The host calls it through
// the segd_init export; plugin tests may call it natively.
func Init(p []byte) error { return initParams(p) }
