package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Editing a config file in place: one field is replaced and everything
// else stays as the operator wrote it (the keys in their order, the
// values as they were, only the indentation made uniform), so that an
// edit from the console reads in a diff as the edit it was.

// jsonMember is one key of a JSON object and its value as written.
type jsonMember struct {
	key string
	val json.RawMessage
}

// members reads a JSON object's keys and values in order.
func members(data []byte) ([]jsonMember, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrDecode)
	}
	var out []jsonMember
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDecode, err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDecode, err)
		}
		out = append(out, jsonMember{key: tok.(string), val: v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", ErrDecode)
	}
	return out, nil
}

// encodeJSONMembers writes the members as one indented JSON object.
func encodeJSONMembers(ms []jsonMember) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.val)
	}
	b.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// Field returns the value at path in data, a JSON object: a top-level
// key, or a key inside one ("ipsets", "admins"). It returns nil when the
// value is not there.
func Field(data []byte, path ...string) (json.RawMessage, error) {
	if len(path) == 0 {
		return nil, errors.New("no field named")
	}
	ms, err := members(data)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.key != path[0] {
			continue
		}
		if len(path) == 1 || string(m.val) == "null" {
			if len(path) > 1 {
				return nil, nil
			}
			return m.val, nil
		}
		return Field(m.val, path[1:]...)
	}
	return nil, nil
}

// SetField returns data, a JSON object, with the value at path replaced
// by value, or added last where it was not there; a nil value removes it
// (and an object it leaves empty). Every other key keeps its place and
// its value.
func SetField(data []byte, value json.RawMessage, path ...string) ([]byte, error) {
	if len(path) == 0 {
		return nil, errors.New("no field named")
	}
	if value != nil && !json.Valid(value) {
		return nil, fmt.Errorf("%w: the value of %s", ErrDecode, path[len(path)-1])
	}
	ms, err := members(data)
	if err != nil {
		return nil, err
	}
	i := 0
	for i < len(ms) && ms[i].key != path[0] {
		i++
	}
	if len(path) > 1 {
		inner := json.RawMessage("{}")
		if i < len(ms) && string(ms[i].val) != "null" {
			inner = ms[i].val
		}
		if value, err = SetField(inner, value, path[1:]...); err != nil {
			return nil, err
		}
		if string(value) == "{}\n" {
			value = nil
		}
	}
	switch {
	case value == nil && i < len(ms):
		ms = append(ms[:i], ms[i+1:]...)
	case value == nil:
	case i < len(ms):
		ms[i].val = value
	default:
		ms = append(ms, jsonMember{key: path[0], val: value})
	}
	return encodeJSONMembers(ms)
}

// PrevSuffix names the previous version of a file WriteFile replaced:
// tapfw.conf.prev beside tapfw.conf.
const PrevSuffix = ".prev"

// WriteFile replaces the file at path with data atomically (a reader
// sees the old file or the new one, whole, even across a crash), with
// the old file's mode (0644 for a new one), and keeps the old one at
// path+PrevSuffix.
func WriteFile(path string, data []byte) error {
	mode := os.FileMode(0o644)
	old, err := os.Stat(path)
	switch {
	case err == nil:
		mode = old.Mode().Perm()
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("writing %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if old != nil {
		prev := path + PrevSuffix
		if err := os.Remove(prev); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keeping the previous %s: %w", path, err)
		}
		if err := os.Link(path, prev); err != nil {
			return fmt.Errorf("keeping the previous %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
