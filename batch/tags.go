package batch

import (
	"bytes"
	"slices"
)

// NormalizeTags appends to dst the normalised form of a tagged metric name,
// as carbon's TaggedSeries.parse(name).path makes it (TAG_RELAY_NORMALIZED):
// "name;k=v;…" or OpenMetrics' `name{k="v",…}` becomes the name (leading
// '~' removed) and its tags ";k=v" sorted, a tag given twice keeping its
// last value, a tag called "name" dropped. ok is false when carbon could not
// parse it (an empty tag or value, a prohibited character); carbon then
// goes on with the name as it was, and so does the caller.
func NormalizeTags(dst, name []byte) (_ []byte, ok bool) {
	var metric []byte
	var tags [][2][]byte
	switch {
	case bytes.HasSuffix(name, []byte(`"}`)) && bytes.IndexByte(name, '{') >= 0:
		if metric, tags, ok = parseOpenMetrics(name); !ok {
			return dst, false
		}
	default:
		segs := bytes.Split(name, []byte(";"))
		metric = segs[0]
		if len(metric) == 0 {
			return dst, false
		}
		for _, seg := range segs[1:] {
			k, v, found := bytes.Cut(seg, []byte("="))
			if !found || len(k) == 0 || !validTag(k, v) {
				return dst, false
			}
			tags = append(tags, [2][]byte{k, v})
		}
	}
	metric = bytes.TrimLeft(metric, "~")
	if len(metric) == 0 {
		return dst, false
	}
	// A dict: the last value of a tag wins; "name" is the metric itself.
	var kept [][]byte
	for i, t := range tags {
		if string(t[0]) == "name" {
			continue
		}
		later := false
		for _, u := range tags[i+1:] {
			if bytes.Equal(u[0], t[0]) {
				later = true
				break
			}
		}
		if !later {
			kept = append(kept, append(append(append([]byte{';'}, t[0]...), '='), t[1]...))
		}
	}
	slices.SortFunc(kept, bytes.Compare)
	dst = append(dst, metric...)
	for _, k := range kept {
		dst = append(dst, k...)
	}
	return dst, true
}

// IsTagged reports whether a name is a tagged series NormalizeTags would
// look at.
func IsTagged(name []byte) bool {
	return bytes.IndexByte(name, ';') >= 0 || bytes.HasSuffix(name, []byte(`"}`)) && bytes.IndexByte(name, '{') >= 0
}

// validTag is carbon's validateTagAndValue.
func validTag(k, v []byte) bool {
	return len(k) > 0 && len(v) > 0 && !bytes.ContainsAny(k, ";!^=") && bytes.IndexByte(v, ';') < 0 && v[0] != '~'
}

// parseOpenMetrics reads name{k="v",…} as carbon does (values may escape
// '"' and '\' with a backslash).
func parseOpenMetrics(s []byte) (metric []byte, tags [][2][]byte, ok bool) {
	body := s[:len(s)-1]
	i := bytes.IndexByte(body, '{')
	metric, raw := body[:i], body[i+1:]
	if len(metric) == 0 || bytes.IndexByte(raw, '{') >= 0 {
		return nil, nil, false // carbon unpacks split('{', 2) into two: a second '{' fails
	}
	for len(raw) > 0 {
		eq := bytes.IndexByte(raw, '=')
		if eq <= 0 || eq+1 >= len(raw) || raw[eq+1] != '"' {
			return nil, nil, false
		}
		k := raw[:eq]
		var v []byte
		j := eq + 2
		for ; j < len(raw) && raw[j] != '"'; j++ {
			if raw[j] == '\\' {
				if j+1 == len(raw) || raw[j+1] != '"' && raw[j+1] != '\\' {
					return nil, nil, false // carbon's expression takes a backslash only before '"' or '\\'
				}
				j++
			}
			v = append(v, raw[j])
		}
		if j >= len(raw) || len(v) == 0 {
			return nil, nil, false
		}
		rest := raw[j+1:]
		switch {
		case len(rest) == 0:
		case rest[0] == ',':
			rest = rest[1:]
		case len(rest) > 1 && rest[0] == ':' && rest[1] == ',':
			rest = rest[2:]
		default:
			return nil, nil, false
		}
		if !validTag(k, v) {
			return nil, nil, false
		}
		tags = append(tags, [2][]byte{k, v})
		raw = rest
	}
	return metric, tags, true
}
