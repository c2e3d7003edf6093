package sdk

// Event is one event of the batch being judged. It is a small value (a
// pointer and an index): passing it around allocates nothing. Its accessors
// read the batch in place; strings they return alias the batch and are valid
// only until the handler returns.
type Event struct {
	b *batch
	i int
}

// User returns the producer's external user id.
func (e Event) User() string { return e.b.str(e.b.users + 8*e.i) }

// Name returns the event name.
func (e Event) Name() string { return e.b.str(e.b.names + 8*e.i) }

// Time returns the event time in Unix milliseconds (UTC).
func (e Event) Time() int64 { return int64(le.Uint64(e.b.data[e.b.times+8*e.i:])) }

// Has reports whether the event carries property key (even if it is null).
func (e Event) Has(key string) bool { t, _ := e.b.typ(e.i, key); return t != Absent }

// Type returns the type of property key, Absent if there is none.
func (e Event) Type(key string) Type { t, _ := e.b.typ(e.i, key); return t }

// Num returns property key as a number, or 0 if it is absent or not a number.
func (e Event) Num(key string) float64 { v, _ := e.b.num(e.i, key); return v }

// NumOK returns property key as a number and whether it is one.
func (e Event) NumOK(key string) (float64, bool) { return e.b.num(e.i, key) }

// Str returns property key as a string, or "" if it is absent or not a string.
func (e Event) Str(key string) string { v, _ := e.b.strProp(e.i, key); return v }

// StrOK returns property key as a string and whether it is one.
func (e Event) StrOK(key string) (string, bool) { return e.b.strProp(e.i, key) }

// Bool returns property key as a bool, false if it is absent or not a bool.
func (e Event) Bool(key string) bool { v, _ := e.b.boolProp(e.i, key); return v }

// BoolOK returns property key as a bool and whether it is one.
func (e Event) BoolOK(key string) (bool, bool) { return e.b.boolProp(e.i, key) }

// JSON returns a nested (array or object) property as JSON text, or nil.
func (e Event) JSON(key string) []byte { return e.b.jsonProp(e.i, key) }

// Profile is one user profile of the batch being judged, with the same
// zero-copy rules as Event; its attributes are read like event properties.
type Profile struct {
	b *batch
	i int
}

// User returns the producer's external user id.
func (p Profile) User() string { return p.b.str(p.b.users + 8*p.i) }

// Has reports whether the profile has attribute key (even if it is null).
func (p Profile) Has(key string) bool { t, _ := p.b.typ(p.i, key); return t != Absent }

// Type returns the type of attribute key, Absent if there is none.
func (p Profile) Type(key string) Type { t, _ := p.b.typ(p.i, key); return t }

// Num returns attribute key as a number, or 0 if it is absent or not a number.
func (p Profile) Num(key string) float64 { v, _ := p.b.num(p.i, key); return v }

// NumOK returns attribute key as a number and whether it is one.
func (p Profile) NumOK(key string) (float64, bool) { return p.b.num(p.i, key) }

// Str returns attribute key as a string, or "" if it is absent or not a string.
func (p Profile) Str(key string) string { v, _ := p.b.strProp(p.i, key); return v }

// StrOK returns attribute key as a string and whether it is one.
func (p Profile) StrOK(key string) (string, bool) { return p.b.strProp(p.i, key) }

// Bool returns attribute key as a bool, false if it is absent or not a bool.
func (p Profile) Bool(key string) bool { v, _ := p.b.boolProp(p.i, key); return v }

// BoolOK returns attribute key as a bool and whether it is one.
func (p Profile) BoolOK(key string) (bool, bool) { return p.b.boolProp(p.i, key) }

// JSON returns a nested (array or object) attribute as JSON text, or nil.
func (p Profile) JSON(key string) []byte { return p.b.jsonProp(p.i, key) }
