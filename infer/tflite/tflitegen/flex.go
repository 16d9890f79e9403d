package tflitegen

import (
	"encoding/binary"
	"math"
	"sort"
)

// FlexValue is a scalar for a FlexBuffer map: int32, float32 or bool.
type FlexValue any

// FlexMap encodes a FlexBuffers map of scalars (the custom_options format TFLite's custom
// operators read), with every value, offset and length 4 bytes wide.
func FlexMap(m map[string]FlexValue) []byte {
	const (
		typeInt   = 1
		typeFloat = 3
		typeMap   = 9
		typeBool  = 26
		width32   = 2 // bit-width code for 4 bytes
	)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // lookups binary-search the keys
	var buf []byte
	u32 := func(v uint32) {
		buf = binary.LittleEndian.AppendUint32(buf, v)
	}
	keyPos := make([]int, len(keys))
	for i, k := range keys {
		keyPos[i] = len(buf)
		buf = append(buf, k...)
		buf = append(buf, 0)
	}
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	// Keys vector: length, then offsets back to each key.
	u32(uint32(len(keys)))
	keysVec := len(buf)
	for i := range keys {
		u32(uint32(len(buf) - keyPos[i]))
	}
	// Map: keys vector offset, keys byte width, length, values, value types.
	u32(uint32(len(buf) - keysVec))
	u32(4)
	u32(uint32(len(keys)))
	mapPos := len(buf)
	types := make([]byte, len(keys))
	for i, k := range keys {
		switch v := m[k].(type) {
		case int:
			u32(uint32(int32(v)))
			types[i] = typeInt<<2 | width32
		case int32:
			u32(uint32(v))
			types[i] = typeInt<<2 | width32
		case float32:
			u32(math.Float32bits(v))
			types[i] = typeFloat<<2 | width32
		case float64:
			u32(math.Float32bits(float32(v)))
			types[i] = typeFloat<<2 | width32
		case bool:
			b := uint32(0)
			if v {
				b = 1
			}
			u32(b)
			types[i] = typeBool<<2 | width32
		default:
			panic("tflitegen: unsupported FlexMap value type")
		}
	}
	buf = append(buf, types...)
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	// Root: offset to the map, its packed type, the root's byte width.
	u32(uint32(len(buf) - mapPos))
	buf = append(buf, typeMap<<2|width32, 4)
	return buf
}
