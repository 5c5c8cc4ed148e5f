package store

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func gz(t testing.TB, b []byte) []byte {
	z, err := Compress(b)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// FuzzUnpack: a stored record of any bytes (compressed or not) is
// decoded or refused, never a panic; what decodes packs and unpacks to
// the same value.
func FuzzUnpack(f *testing.F) {
	f.Add([]byte(`{"id":"roll-1","record":{"nodes":[{"name":"n1"}]}}`), true)
	f.Add([]byte(`[1, "a", null, {"b": [true]}]`), true)
	f.Add([]byte("\x1f\x8b\x08\x00garbage"), false)
	f.Fuzz(func(t *testing.T, b []byte, compress bool) {
		if compress {
			b = gz(t, b)
		}
		var v any
		if err := Unpack(b, &v); err != nil {
			return
		}
		packed, err := Pack(v)
		if err != nil {
			t.Fatalf("a decoded value does not pack: %v", err)
		}
		var again any
		if err := Unpack(packed, &again); err != nil || !reflect.DeepEqual(v, again) {
			t.Fatalf("round trip: %v, %#v != %#v", err, again, v)
		}
	})
}

// A record that inflates past the limit is refused, not read whole.
func TestUnpackRefusesABomb(t *testing.T) {
	big := append(append([]byte(`"`), bytes.Repeat([]byte("a"), limit+1)...), '"')
	var s string
	err := Unpack(gz(t, big), &s)
	if err == nil || !strings.Contains(err.Error(), "inflates past 64 MiB") {
		t.Fatalf("a %d-byte record: %v", len(big), err)
	}
}
