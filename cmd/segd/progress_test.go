package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestProgressOnlyOnATerminal: neither the elapsed-time line nor the
// export's bar writes anything to a buffer or a file (a pipe, a log).
func TestProgressOnlyOnATerminal(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b bytes.Buffer
	for _, w := range []interface {
		Write([]byte) (int, error)
	}{&b, f} {
		if bar := newBytesBar(w, 100, "fetching"); bar != nil {
			t.Errorf("%T: a progress bar off a terminal", w)
		}
		showElapsed(w, "waiting")()
	}
	if st, _ := f.Stat(); b.Len() != 0 || st.Size() != 0 {
		t.Errorf("wrote %q and %d bytes off a terminal", b.String(), st.Size())
	}
}
