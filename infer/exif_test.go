package infer

import (
	"bytes"
	"encoding/binary"
	"image/color"
	"slices"
	"testing"
)

// byteOrder is what the TIFF builder needs of a byte order.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// exifJPEG returns a JPEG stream (SOI, the given segments, then a tiny real image from
// its first segment on) so the orientation parser sees segments where a camera puts them.
func exifJPEG(t testing.TB, segments ...[]byte) []byte {
	body := encodeJPEG(t, solid(2, 2, color.White))[2:] // drop SOI
	out := []byte{0xFF, 0xD8}
	for _, s := range segments {
		out = append(out, s...)
	}
	return append(out, body...)
}

// segment is a marker segment: FF m, a big-endian length (itself included), payload.
func segment(m byte, payload []byte) []byte {
	s := []byte{0xFF, m, 0, 0}
	binary.BigEndian.PutUint16(s[2:], uint16(len(payload)+2))
	return append(s, payload...)
}

// tiffIFD0 is a TIFF structure whose IFD0 holds entries {tag, type, count, value}.
func tiffIFD0(bo byteOrder, entries [][4]uint32) []byte {
	t := []byte("MM")
	if bo == byteOrder(binary.LittleEndian) {
		t = []byte("II")
	}
	t = bo.AppendUint16(t, 42)
	t = bo.AppendUint32(t, 8)
	t = bo.AppendUint16(t, uint16(len(entries)))
	for _, e := range entries {
		t = bo.AppendUint16(t, uint16(e[0]))
		t = bo.AppendUint16(t, uint16(e[1]))
		t = bo.AppendUint32(t, e[2])
		if e[1] == tiffShort {
			t = bo.AppendUint16(t, uint16(e[3]))
			t = append(t, 0, 0)
		} else {
			t = bo.AppendUint32(t, e[3])
		}
	}
	return bo.AppendUint32(t, 0) // no IFD1
}

func exifSegment(tiff []byte) []byte {
	return segment(0xE1, append([]byte("Exif\x00\x00"), tiff...))
}

func TestJPEGOrientation(t *testing.T) {
	le, be := byteOrder(binary.LittleEndian), byteOrder(binary.BigEndian)
	orient := func(bo byteOrder, v uint32) []byte {
		return exifSegment(tiffIFD0(bo, [][4]uint32{{0x010F, 2, 4, 0}, {tagOrientation, tiffShort, 1, v}, {0x0131, 2, 4, 0}}))
	}
	xmp := segment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"))
	jfif := segment(0xE0, []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"))
	tests := []struct {
		name string
		data []byte
		want int
	}{
		{"none", exifJPEG(t), 1},
		{"little-endian 6", exifJPEG(t, jfif, orient(le, 6)), 6},
		{"big-endian 8", exifJPEG(t, jfif, orient(be, 8)), 8},
		{"after an XMP APP1", exifJPEG(t, xmp, orient(be, 3)), 3},
		{"fill bytes before a marker", exifJPEG(t, []byte{0xFF, 0xFF}, orient(le, 5)), 5},
		{"LONG value", exifJPEG(t, exifSegment(tiffIFD0(be, [][4]uint32{{tagOrientation, tiffLong, 1, 7}}))), 7},
		{"0 is out of range", exifJPEG(t, orient(le, 0)), 1},
		{"9 is out of range", exifJPEG(t, orient(be, 9)), 1},
		{"wrong type", exifJPEG(t, exifSegment(tiffIFD0(le, [][4]uint32{{tagOrientation, 2, 1, 6}}))), 1},
		{"zero count", exifJPEG(t, exifSegment(tiffIFD0(le, [][4]uint32{{tagOrientation, tiffShort, 0, 6}}))), 1},
		{"no orientation tag", exifJPEG(t, exifSegment(tiffIFD0(le, [][4]uint32{{0x010F, 2, 4, 0}}))), 1},
		{"bad byte order", exifJPEG(t, exifSegment(append([]byte("IM"), tiffIFD0(le, [][4]uint32{{tagOrientation, tiffShort, 1, 6}})[2:]...))), 1},
		{"bad magic", exifJPEG(t, exifSegment(func() []byte {
			b := tiffIFD0(le, [][4]uint32{{tagOrientation, tiffShort, 1, 6}})
			b[2] = 43
			return b
		}())), 1},
		{"IFD offset past the end", exifJPEG(t, exifSegment(func() []byte {
			b := tiffIFD0(be, [][4]uint32{{tagOrientation, tiffShort, 1, 6}})
			be.PutUint32(b[4:], 1<<30)
			return b
		}())), 1},
		{"entry count past the end", exifJPEG(t, exifSegment(func() []byte {
			b := tiffIFD0(le, [][4]uint32{{tagOrientation + 1, tiffShort, 1, 6}})
			le.PutUint16(b[8:], 5000)
			return b
		}())), 1},
		{"segment length past the end", append([]byte{0xFF, 0xD8}, orient(le, 6)[:20]...), 1},
		{"Exif after the scan is not metadata", func() []byte {
			j := exifJPEG(t)
			return append(j[:len(j)-2], append(orient(le, 6), 0xFF, 0xD9)...)
		}(), 1},
		{"not a JPEG", orient(le, 6), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := jpegOrientation(tc.data); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// FuzzEXIF: the parser never panics, never writes to its input, and returns an
// orientation in 1..8; a well-formed segment carrying the fuzzer's value parses back to
// it (1 when out of range) in both byte orders. The input is used both as a whole JPEG
// stream and as the TIFF body of an Exif segment, so the fuzzer reaches the IFD walk at
// once.
func FuzzEXIF(f *testing.F) {
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xD9}, uint16(6))
	f.Add(tiffIFD0(binary.LittleEndian, [][4]uint32{{tagOrientation, tiffShort, 1, 6}}), uint16(3))
	f.Add(tiffIFD0(binary.BigEndian, [][4]uint32{{0x010F, 2, 4, 0}, {tagOrientation, tiffShort, 1, 8}}), uint16(9))
	f.Add(exifJPEG(f, exifSegment(tiffIFD0(binary.BigEndian, [][4]uint32{{tagOrientation, tiffLong, 1, 2}}))), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, v uint16) {
		in := bytes.Clone(data)
		for _, stream := range [][]byte{data, append([]byte{0xFF, 0xD8}, exifSegment(data)...)} {
			if o := jpegOrientation(stream); o < 1 || o > 8 {
				t.Fatalf("orientation %d out of 1..8", o)
			}
		}
		if !bytes.Equal(in, data) {
			t.Fatal("parser modified its input")
		}
		for _, bo := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
			j := exifJPEG(t, exifSegment(tiffIFD0(bo, [][4]uint32{{0x0100, tiffLong, 1, 7}, {tagOrientation, tiffShort, 1, uint32(v)}})))
			want := int(v)
			if v < 1 || v > 8 {
				want = 1
			}
			if got := jpegOrientation(j); got != want {
				t.Fatalf("%v: orientation %d parsed as %d", bo, v, got)
			}
		}
	})
}

// TestOrientationMaps checks the upright→stored mapping of every orientation on a 3×2
// picture against the EXIF definitions, written out pixel by pixel.
func TestOrientationMaps(t *testing.T) {
	// Stored pixels: row 0 = a b c, row 1 = d e f.
	stored := fromPix(3, 2, []uint8{'a', 0, 0, 'b', 0, 0, 'c', 0, 0, 'd', 0, 0, 'e', 0, 0, 'f', 0, 0})
	want := map[int][]string{
		1: {"abc", "def"},
		2: {"cba", "fed"},     // mirrored left-right
		3: {"fed", "cba"},     // turned 180°
		4: {"def", "abc"},     // mirrored top-bottom
		5: {"ad", "be", "cf"}, // transposed
		6: {"da", "eb", "fc"}, // turned 90° clockwise
		7: {"fc", "eb", "da"}, // transverse
		8: {"cf", "be", "ad"}, // turned 90° counter-clockwise
	}
	for o := 1; o <= 8; o++ {
		img := &rgbImage{src: stored.src, orient: newOrientation(o)}
		w, h := img.decodedSize()
		var rows []string
		for y := range h {
			var r []byte
			for x := range w {
				r = append(r, img.pixel(x, y)[0])
			}
			rows = append(rows, string(r))
		}
		if !slices.Equal(rows, want[o]) {
			t.Errorf("orientation %d: got %q, want %q", o, rows, want[o])
		}
	}
}
