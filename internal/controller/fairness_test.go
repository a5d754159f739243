package controller

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestMintSlots(t *testing.T) {
	ctx := context.Background()
	const wait = 20 * time.Millisecond
	m := newMintSlots(2)
	for i := range 2 {
		if !m.acquire(ctx, "a", wait) {
			t.Fatalf("slot %d of namespace a is taken", i+1)
		}
	}
	if m.acquire(ctx, "a", wait) {
		t.Error("a third concurrent mint of namespace a was admitted")
	}
	if !m.acquire(ctx, "b", wait) {
		t.Error("namespace b is not limited by a's mints")
	}

	// A slot freed while a reconcile waits goes to it.
	got := make(chan bool)
	go func() { got <- m.acquire(ctx, "a", time.Minute) }()
	time.Sleep(wait)
	m.release("a")
	if !<-got {
		t.Error("a waiting reconcile did not get the slot released meanwhile")
	}

	m.release("a")
	m.release("a")
	m.release("b")
	if len(m.namespaces) != 0 {
		t.Errorf("namespaces left after every release: %v", m.namespaces)
	}
	unbounded := newMintSlots(0)
	for range 100 {
		if !unbounded.acquire(ctx, "a", 0) {
			t.Fatal("a limit of 0 bounds nothing")
		}
	}
	if DefaultMintsPerNamespace(16) != 4 || DefaultMintsPerNamespace(1) != 1 {
		t.Errorf("DefaultMintsPerNamespace(16, 1) = %d, %d", DefaultMintsPerNamespace(16), DefaultMintsPerNamespace(1))
	}
}

func TestCapMessage(t *testing.T) {
	short := "token valid until 2026-11-29T13:00:00Z"
	if got := capMessage(short); got != short {
		t.Errorf("a short message changed: %q", got)
	}
	long := strings.Repeat("é", 2000) // two bytes each: the cut must not split one
	got := capMessage(long)
	if len(got) > maxMessageBytes || !strings.HasSuffix(got, "...") || !utf8.ValidString(got) {
		t.Errorf("capMessage: %d bytes, valid UTF-8 %v, suffix %q", len(got), utf8.ValidString(got), got[len(got)-3:])
	}
}
