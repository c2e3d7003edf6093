package client

import (
	"encoding/json"
	"testing"
)

func TestJSONStringLenMatchesEncoding(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "u1", `a"b\c`, "tab\there\nnl\r", "<&>", "\x00\x1f", "é漢字🙂", "bad\xff\xfe", "\u2028\u2029", "x\x7f"} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonStringLen(s); got != len(b) {
			t.Errorf("jsonStringLen(%q) = %d, encoding/json writes %d bytes", s, got, len(b))
		}
	}
}
