package bus

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestDecodeBatchRandomItems decodes random batches built from the pieces
// that steer the decoders (field names of every case and spelling,
// repeated fields, values of each type, escapes, surrogates, bad UTF-8,
// edge numbers and times, nesting near the limit, blank and junk NDJSON
// lines) with both decoders, through checkSameDecode.
func TestDecodeBatchRandomItems(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(15, 15))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for range n {
		checkSameDecode(t, []byte(randomBatch(r)))
	}
}

var (
	randNames = []string{"user", "event", "time", "props", "profile", "User", "EVENT", "Time", "pRoPs", "PROFILE",
		"uſer", "us\\u0065r", "tiem", "", "USER", "user"}
	randUsers = []string{`"u1"`, `"u2"`, `"u\u00e9"`, `"x\ud83d\ude00"`, `"x\ud800"`, "\"id\xff\"", `""`, `42`, `-0`, `1.5`,
		`9223372036854775807`, `9223372036854775808`, `null`, `true`, `{"a":1}`, `["u"]`, `"` + strings.Repeat("u", 1025) + `"`,
		`"` + strings.Repeat("v", 1024) + `"`, `"a\"b"`, `"\u0000"`}
	randEvents = []string{`"view"`, `"buy"`, `""`, `"@big"`, `null`, `5`, `"` + strings.Repeat("e", 257) + `"`, `"e\u0301"`,
		"\"e\xc3\"", `"\ud83d\ude00"`, `{}`}
	randTimes = []string{`1700000000000`, `"2026-11-28T10:15:00+08:00"`, `"2026-11-28T10:15:00.123456789Z"`, `"yesterday"`, `null`,
		`1.7e12`, `1.5`, `-1`, `1e300`, `99999999999999999999`, `true`, `"2024-02-30T00:00:00Z"`, `[]`, `"2026-11-28T10:15:00,5Z"`}
	randValues = []string{`1`, `-0`, `-0.0`, `0.1`, `1e400`, `-1e-400`, `12345678901234567890`, `255`, `256`, `"s"`, `""`, `"a\nb"`,
		`"\u00e9\ud83d\ude00"`, `"\udc00"`, "\"\xff\"", `true`, `false`, `null`, `[]`, `{}`, `[1,"a",null]`,
		`{"k":1,"k":2}`, `{"k":{"k":1}}`, `{"\u006b":1,"k":2}`, `"` + strings.Repeat("w", 300) + `"`}
)

func randomBatch(r *rand.Rand) string {
	items := make([]string, 1+r.IntN(5))
	for i := range items {
		items[i] = randomItem(r)
	}
	if r.IntN(3) == 0 {
		lines := items
		if r.IntN(4) == 0 {
			lines = append(lines, "", "  ", "x", "[1]", `{"user":"u"} {}`)
			r.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
		}
		return strings.Join(lines, []string{"\n", "\r\n", "\n\n"}[r.IntN(3)])
	}
	sep := []string{",", " , ", ",\n"}[r.IntN(3)]
	s := "[" + strings.Join(items, sep) + "]"
	if r.IntN(20) == 0 {
		s += []string{" x", "]", ",", "\u00a0"}[r.IntN(4)]
	}
	return s
}

func randomItem(r *rand.Rand) string {
	switch r.IntN(30) {
	case 0:
		return []string{"null", "42", `"s"`, "[]", "{}", "true"}[r.IntN(6)]
	case 1:
		return `{"user":"u","event":"e","props":{"x":` + strings.Repeat("[", 60+r.IntN(8)) + strings.Repeat("]", 60+r.IntN(8)) + "}}"
	}
	var members []string
	add := func(name, value string) { members = append(members, `"`+name+`":`+value) }
	for _, field := range []string{"user", "event", "time", "props", "profile"} {
		if r.IntN(5) == 0 {
			continue
		}
		name := field
		if r.IntN(6) == 0 {
			name = randNames[r.IntN(len(randNames))]
		}
		switch field {
		case "user":
			add(name, randUsers[r.IntN(len(randUsers))])
		case "event":
			add(name, randEvents[r.IntN(len(randEvents))])
		case "time":
			add(name, randTimes[r.IntN(len(randTimes))])
		default:
			add(name, randomObject(r, 2))
		}
	}
	if r.IntN(8) == 0 { // a repeated member
		add(randNames[r.IntN(len(randNames))], randUsers[r.IntN(len(randUsers))])
	}
	r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	return "{" + strings.Join(members, []string{",", " ,\t"}[r.IntN(2)]) + "}"
}

func randomObject(r *rand.Rand, depth int) string {
	if r.IntN(8) == 0 {
		return []string{"null", "[]", `"x"`, "1"}[r.IntN(4)]
	}
	n := r.IntN(5)
	if r.IntN(20) == 0 {
		n = 70 // past largeObject
	}
	members := make([]string, n)
	for i := range members {
		key := fmt.Sprintf("k%d", r.IntN(n+2))
		if r.IntN(30) == 0 {
			key = strings.Repeat("k", 257)
		}
		var v string
		if depth < 6 && r.IntN(6) == 0 {
			v = randomObject(r, depth+1)
		} else {
			v = randValues[r.IntN(len(randValues))]
		}
		members[i] = `"` + key + `":` + v
	}
	return "{" + strings.Join(members, ",") + "}"
}
