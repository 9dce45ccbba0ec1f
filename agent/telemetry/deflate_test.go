package telemetry

import (
	"bytes"
	"compress/flate"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func inflate(t testing.TB, data []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(flate.NewReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("compress/flate cannot read appendDeflate's output: %v", err)
	}
	return out
}

// TestAppendDeflate: compress/flate reads back exactly what appendDeflate
// compressed: short inputs, literals of every value, the longest matches,
// distances at and beyond the window, and text that compresses.
func TestAppendDeflate(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	block := random(1000)
	farRepeat := append(append(append([]byte{}, block...), random(lzMaxDistance-1000)...), block...) // at distance 32768
	tooFar := append(append(append([]byte{}, block...), random(lzMaxDistance-999)...), block...)     // at distance 32769: beyond the window
	json := []byte(strings.Repeat(`{"name":"network_receive_bytes_total","value":123456789,"labels":{"interface":"eth0"}},`, 200))
	cases := map[string][]byte{
		"empty":              {},
		"one byte":           {'x'},
		"three bytes":        []byte("abc"),
		"four equal bytes":   []byte("aaaa"),
		"every byte value":   allBytes,
		"run of one byte":    bytes.Repeat([]byte{0}, 10000), // distance 1, length 258 over and over
		"random":             random(70000),
		"repeat at 32768":    farRepeat,
		"repeat beyond 32K":  tooFar,
		"json-like":          json,
		"match to the end":   []byte("abcdefgh-abcdefgh"),
		"every match length": lengths(),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			prefix := []byte("kept")
			out := appendDeflate(bytes.Clone(prefix), in)
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("dst's bytes were not kept")
			}
			if got := inflate(t, out[len(prefix):]); !bytes.Equal(got, in) {
				t.Errorf("round trip of %d bytes gave %d different bytes", len(in), len(got))
			}
		})
	}
	if n := len(appendDeflate(nil, json)); n > len(json)/20 {
		t.Errorf("%d bytes of repetitive JSON compressed to %d; want at most a twentieth", len(json), n)
	}
}

// lengths has a repeat of every length from 3 to 300, each after a unique
// separator.
func lengths() []byte {
	var b []byte
	src := make([]byte, 300)
	for i := range src {
		src[i] = byte('a' + i%23)
	}
	for n := 3; n <= 300; n++ {
		b = append(b, byte(n), byte(n>>8), 0xff)
		b = append(b, src[:n]...)
	}
	return b
}

func FuzzAppendDeflate(f *testing.F) {
	f.Add([]byte("hello hello hello"))
	f.Add(bytes.Repeat([]byte("ab"), 500))
	f.Fuzz(func(t *testing.T, in []byte) {
		if got := inflate(t, appendDeflate(nil, in)); !bytes.Equal(got, in) {
			t.Errorf("round trip of %d bytes gave %d different bytes", len(in), len(got))
		}
	})
}

func BenchmarkAppendDeflate(b *testing.B) {
	in := []byte(strings.Repeat(`{"name":"cpu_usage_ratio","value":0.0123,"labels":{"cpu":"1"}},`, 80))
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	var out []byte
	for b.Loop() {
		out = appendDeflate(out[:0], in)
	}
}
