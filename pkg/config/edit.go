package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
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
// the old file's mode and owner (0644 for a new one), and keeps the old
// one at path+PrevSuffix. A symbolic link at path is followed: the file
// it names is replaced.
func WriteFile(path string, data []byte) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	mode := os.FileMode(0o644)
	old, err := os.Stat(path)
	switch {
	case err == nil:
		mode = old.Mode().Perm()
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp, err := writeTemp(path, data, mode, old)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp)
	if old != nil {
		prev := path + PrevSuffix
		if err := os.Remove(prev); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keeping the previous %s: %w", path, err)
		}
		if err := os.Link(path, prev); err != nil {
			return fmt.Errorf("keeping the previous %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// The new file is in place; syncing its directory makes the rename
	// survive a crash, and its failure changes nothing the caller could
	// act on.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// writeTemp writes data to a new file beside path, synced, with mode and
// the owner of old (when there is one), and returns its name.
func writeTemp(path string, data []byte, mode os.FileMode, old os.FileInfo) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return "", err
	}
	err = func() error {
		if _, err := f.Write(data); err != nil {
			return err
		}
		if err := f.Chmod(mode); err != nil {
			return err
		}
		if st, ok := statOwner(old); ok {
			if err := f.Chown(st.uid, st.gid); err != nil {
				return err
			}
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

type owner struct{ uid, gid int }

// statOwner is the owner of the file fi describes.
func statOwner(fi os.FileInfo) (owner, bool) {
	if fi == nil {
		return owner{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return owner{}, false
	}
	return owner{int(st.Uid), int(st.Gid)}, true
}
