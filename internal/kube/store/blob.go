package store

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
)

// limit bounds what Unpack inflates, against a corrupt or hostile record.
const limit = 64 << 20

// Pack encodes v as JSON and compresses it.
func Pack(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	return Compress(raw)
}

// Compress gzips raw as Pack stores it: what Unpack inflates.
func Compress(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("compressing: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing: %w", err)
	}
	return buf.Bytes(), nil
}

// Unpack inflates b and decodes its JSON into v.
func Unpack(b []byte, v any) error {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("inflating: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return fmt.Errorf("inflating: %w", err)
	}
	if len(raw) > limit {
		return fmt.Errorf("inflating: the record inflates past %d MiB", limit>>20)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	return nil
}
