package bus

import (
	"context"
	"errors"
	"testing"
)

func TestSeqWaiter(t *testing.T) {
	t.Parallel()
	var w SeqWaiter
	done := make(chan error, 1)
	go func() { done <- w.Wait(context.Background(), 3) }()
	changed := w.Changed()
	w.Applied(2)
	<-changed
	select {
	case err := <-done:
		t.Fatalf("Wait(3) returned at 2: %v", err)
	default:
	}
	w.Applied(5)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w.Applied(4) // never goes back
	if w.Last() != 5 {
		t.Fatalf("Last = %d, want 5", w.Last())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Wait(ctx, 9); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled ctx = %v", err)
	}
}
