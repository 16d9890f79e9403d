package infer

import (
	"bytes"
	"encoding/binary"
)

// EXIF orientation: how the stored pixels must be turned to be seen upright (TIFF tag
// 0x0112 in IFD0 of a JPEG's APP1 "Exif" segment). 1 is upright; 2–4 mirror or turn
// 180°; 5–8 swap width and height.
const (
	orientNormal     = 1 // as stored
	orientMirrorH    = 2 // mirrored left-right
	orientRotate180  = 3
	orientMirrorV    = 4 // mirrored top-bottom
	orientTranspose  = 5 // stored row 0 is the left column, stored column 0 the top row
	orientRotate90CW = 6 // stored row 0 is the right column: turn 90° clockwise to view
	orientTransverse = 7 // stored row 0 is the right column, read bottom-up
	orientRotate270  = 8 // stored row 0 is the left column, read bottom-up: turn 90° counter-clockwise
)

const (
	tagOrientation = 0x0112
	tiffShort      = 3
	tiffLong       = 4
)

// jpegOrientation returns the EXIF orientation (1..8) of a JPEG stream, or 1 when it
// has none, or one that cannot be read or is out of range. It walks the marker
// segments before the first scan and reads the first APP1 "Exif" segment that holds
// IFD0's orientation tag; it never reads past data and never allocates.
func jpegOrientation(data []byte) int {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return orientNormal
	}
	p := 2
	for p+4 <= len(data) {
		if data[p] != 0xFF {
			return orientNormal // not a marker where one must be
		}
		m := data[p+1]
		switch {
		case m == 0xFF: // fill byte
			p++
			continue
		case m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7): // no length
			p += 2
			continue
		case m == 0xDA || m == 0xD9: // start of scan, end of image: metadata is over
			return orientNormal
		}
		n := int(binary.BigEndian.Uint16(data[p+2:]))
		if n < 2 || p+2+n > len(data) {
			return orientNormal
		}
		seg := data[p+4 : p+2+n]
		if m == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			if o, ok := tiffOrientation(seg[6:]); ok {
				return o
			}
		}
		p += 2 + n
	}
	return orientNormal
}

// tiffOrientation reads tag 0x0112 of IFD0 in a TIFF structure (either byte order).
func tiffOrientation(t []byte) (int, bool) {
	if len(t) < 8 {
		return 0, false
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0, false
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0, false
	}
	off := bo.Uint32(t[4:])
	if off < 8 || uint64(off)+2 > uint64(len(t)) {
		return 0, false
	}
	ifd := t[off:]
	count := int(bo.Uint16(ifd))
	entries := ifd[2:]
	for i := 0; i < count && 12*i+12 <= len(entries); i++ {
		e := entries[12*i : 12*i+12]
		if bo.Uint16(e) != tagOrientation {
			continue
		}
		var v uint32
		switch typ, n := bo.Uint16(e[2:]), bo.Uint32(e[4:]); {
		case n < 1:
			return 0, false
		case typ == tiffShort: // the usual form: a SHORT, left-justified in the value field
			v = uint32(bo.Uint16(e[8:]))
		case typ == tiffLong && n == 1:
			v = bo.Uint32(e[8:])
		default:
			return 0, false
		}
		if v < orientNormal || v > orientRotate270 {
			return 0, false
		}
		return int(v), true
	}
	return 0, false
}

// orientation maps positions in the upright (displayed) picture to positions in the
// stored pixels. All eight EXIF orientations are separable: a displayed column x maps
// to one stored coordinate and a displayed row y to the other, each possibly mirrored.
type orientation struct {
	transpose bool // displayed x picks the stored row, displayed y the stored column
	flipX     bool // the stored coordinate picked by x is mirrored
	flipY     bool // the stored coordinate picked by y is mirrored
}

func newOrientation(o int) orientation {
	switch o {
	case orientMirrorH:
		return orientation{flipX: true}
	case orientRotate180:
		return orientation{flipX: true, flipY: true}
	case orientMirrorV:
		return orientation{flipY: true}
	case orientTranspose:
		return orientation{transpose: true}
	case orientRotate90CW:
		return orientation{transpose: true, flipX: true}
	case orientTransverse:
		return orientation{transpose: true, flipX: true, flipY: true}
	case orientRotate270:
		return orientation{transpose: true, flipY: true}
	}
	return orientation{}
}

// upright is the displayed size of a stored w×h picture.
func (o orientation) upright(w, h int) (int, int) {
	if o.transpose {
		return h, w
	}
	return w, h
}
