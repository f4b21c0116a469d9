package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"github.com/containernetworking/cni/pkg/types"
)

// Strict JSON decoding. Go's decoder matches object keys to struct fields
// ignoring case (and folds 'ſ' to 's', 'K' to 'k'), lets a later duplicate
// key win, and reports neither the path of an unknown key nor the list
// index of a value of the wrong type. The config is read with exact keys
// instead: before decoding, the input is scanned alongside the Go type
// (keyChecker), every object key must be the JSON name of a field
// exactly, at most once per object, and every value of the JSON type its
// field needs.

// checkSyntax reports why data is not exactly one JSON value: malformed
// JSON, or trailing data after the value. The message is the decoder's
// ("unexpected end of JSON input", "invalid character ...").
func checkSyntax(data []byte) error {
	if json.Valid(data) {
		return nil
	}
	var raw json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if dec.Decode(&raw) == nil {
		// The first value is whole: what follows it is the problem.
		err := json.Unmarshal(data, &raw)
		return fmt.Errorf("trailing data after the JSON value (%v)", err)
	}
	return json.Unmarshal(data, &raw)
}

// decodeStrict decodes data, which must be exactly one JSON value, into v
// (a pointer). Malformed JSON is an error that is not a *Error; all other
// errors are *Error naming the key's path, prefixed with path: Code
// ErrUnsupportedField for an unknown or duplicate key, ErrDecodingFailure
// for a value of the wrong JSON type. null is accepted for v itself only
// when nullOK.
func decodeStrict(data []byte, v any, path string, nullOK bool) error {
	if err := checkSyntax(data); err != nil {
		return err
	}
	if err := checkKeys(data, reflect.TypeOf(v).Elem(), path, nullOK); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeErr(err, path)
	}
	return nil
}

var unknownFieldRE = regexp.MustCompile(`json: unknown field "([^"]*)"`)

// decodeErr maps an error of encoding/json's decoder to a *Error. The
// checks of checkKeys come first, so this is a fallback.
func decodeErr(err error, path string) error {
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	if m := unknownFieldRE.FindStringSubmatch(err.Error()); m != nil {
		return &Error{Field: joinPath(path, m[1]), Code: types.ErrUnsupportedField, Err: errors.New("unknown field")}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := path
		if f := stripEmbedded(te.Field); f != "" {
			field = joinPath(path, f)
		}
		return &Error{Field: field, Code: types.ErrDecodingFailure,
			Err: fmt.Errorf("wrong type: got JSON %s, want %s", te.Value, te.Type)}
	}
	return &Error{Field: path, Code: types.ErrDecodingFailure, Err: err}
}

// embeddedNames are the Go names of the structs NetConf embeds, which
// encoding/json puts in the paths of its errors ("PluginConf.type") though
// they are no part of the JSON.
var embeddedNames = func() map[string]bool {
	out := map[string]bool{}
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous {
				out[f.Name] = true
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(NetConf{}))
	return out
}()

// stripEmbedded drops embedded struct names from a dotted field path.
func stripEmbedded(field string) string {
	parts := strings.Split(field, ".")
	out := parts[:0]
	for _, p := range parts {
		if !embeddedNames[p] {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

var (
	rawMessageType      = reflect.TypeOf(json.RawMessage(nil))
	argsConfType        = reflect.TypeOf(ArgsConf{})
	ruleListsType       = reflect.TypeOf(RuleLists{})
	unmarshalerType     = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// checkKeys walks data, which must be valid JSON (checkSyntax), alongside
// typ. See keyChecker. Errors name the path under path.
func checkKeys(data []byte, typ reflect.Type, path string, nullOK bool) error {
	kc := &keyChecker{data: data, base: path}
	if kc.kind() == 'n' && !nullOK {
		return kc.typeErr(typ)
	}
	return kc.value(typ)
}

// keyChecker checks a JSON value against the Go type it decodes into:
//   - an object decoding into a struct has only keys that are the exact
//     JSON names of its fields (embedded structs' fields included);
//   - no object has a key twice;
//   - each value has the JSON type its field needs (null is always
//     accepted, as encoding/json leaves the field alone).
//
// Values tapfw does not read are accepted as they are: fields of type
// json.RawMessage or interface{}, and the contents (not the type) of a
// map[string]interface{} such as prevResult. "args" is read leniently, as
// other plugins' keys may be there, except args.cni.tapfwRules.
//
// It scans the bytes itself (encoding/json's Decoder.Token is several
// times slower than decoding) and relies on them being valid JSON.
type keyChecker struct {
	data []byte
	pos  int
	base string    // path of the value checked
	path []pathSeg // where the scan is, under base
}

// pathSeg is an object key or, when key is not set, a list index.
type pathSeg struct {
	key   string
	isKey bool
	index int
}

// where returns the path of the value being checked.
func (kc *keyChecker) where() string {
	var b strings.Builder
	b.WriteString(kc.base)
	for _, s := range kc.path {
		if s.isKey {
			p := joinPath(b.String(), s.key)
			b.Reset()
			b.WriteString(p)
		} else {
			fmt.Fprintf(&b, "[%d]", s.index)
		}
	}
	return b.String()
}

func (kc *keyChecker) typeErr(typ reflect.Type) error {
	return &Error{Field: kc.where(), Code: types.ErrDecodingFailure,
		Err: fmt.Errorf("wrong type: got JSON %s, want %s", kindName(kc.kind()), wantKind(typ))}
}

func (kc *keyChecker) keyErr(msg string) error {
	return &Error{Field: kc.where(), Code: types.ErrUnsupportedField, Err: errors.New(msg)}
}

// kind skips white space and returns the first byte of the next value:
// '{', '[', '"', 't', 'f', 'n', or that of a number.
func (kc *keyChecker) kind() byte {
	for kc.pos < len(kc.data) {
		switch c := kc.data[kc.pos]; c {
		case ' ', '\t', '\n', '\r':
			kc.pos++
		default:
			return c
		}
	}
	return 0
}

// next consumes the byte kind returned.
func (kc *keyChecker) next() byte {
	c := kc.kind()
	kc.pos++
	return c
}

// str consumes a string and returns its value, unescaped as
// encoding/json does (invalid UTF-8 becoming U+FFFD).
func (kc *keyChecker) str() string {
	start := kc.pos
	kc.pos++ // '"'
	plain := true
	for {
		c := kc.data[kc.pos]
		if c == '\\' {
			plain = false
			kc.pos += 2
			continue
		}
		kc.pos++
		if c == '"' {
			break
		}
		if c >= 0x80 {
			plain = false
		}
	}
	raw := kc.data[start:kc.pos]
	if plain {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		panic(fmt.Sprintf("config: string %q is not valid JSON: %v", raw, err)) // checkSyntax passed it
	}
	return s
}

// skip consumes a value.
func (kc *keyChecker) skip() {
	switch kc.kind() {
	case '"':
		kc.str()
	case '{', '[':
		depth := 0
		for {
			switch c := kc.kind(); c {
			case '"':
				kc.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			kc.pos++
			if depth == 0 {
				return
			}
		}
	default: // true, false, null, a number
		for kc.pos < len(kc.data) {
			switch kc.data[kc.pos] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			kc.pos++
		}
	}
}

// value checks the next value against typ.
func (kc *keyChecker) value(typ reflect.Type) error {
	k := kc.kind()
	if k == 'n' {
		kc.skip() // null
		return nil
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case typ == argsConfType:
		return kc.args()
	case typ == logOptionType:
		if k != 't' && k != 'f' && k != '"' {
			return &Error{Field: kc.where(), Code: types.ErrDecodingFailure, Err: errors.New("wrong type: want true, false or a log level")}
		}
		kc.skip()
		return nil
	case unchecked(typ):
		kc.skip()
		return nil
	}
	switch typ.Kind() {
	case reflect.Struct:
		return kc.structValue(typ, k)
	case reflect.Map:
		return kc.mapValue(typ, k)
	case reflect.Slice, reflect.Array:
		return kc.listValue(typ, k)
	}
	return kc.scalar(typ, k)
}

// unchecked reports whether values of typ are not checked here: free-form
// (json.RawMessage, an interface) or decoding themselves, the decoder
// reporting their errors.
func unchecked(typ reflect.Type) bool {
	return typ == rawMessageType || typ.Kind() == reflect.Interface ||
		reflect.PointerTo(typ).Implements(unmarshalerType) || reflect.PointerTo(typ).Implements(textUnmarshalerType)
}

// structValue checks an object, which starts with k, against the struct
// typ: every key must be one of its fields.
func (kc *keyChecker) structValue(typ reflect.Type, k byte) error {
	if k != '{' {
		return kc.typeErr(typ)
	}
	fields := structFields(typ)
	return kc.object(func(key string) error {
		ft, ok := fields[key]
		if !ok {
			return kc.keyErr("unknown field")
		}
		return kc.value(ft)
	})
}

// mapValue checks an object, which starts with k, against the map typ:
// its keys are free, its values are checked.
func (kc *keyChecker) mapValue(typ reflect.Type, k byte) error {
	if k != '{' {
		return kc.typeErr(typ)
	}
	if typ.Elem().Kind() == reflect.Interface {
		kc.skip() // free-form (prevResult): not tapfw's to check
		return nil
	}
	return kc.object(func(string) error { return kc.value(typ.Elem()) })
}

// listValue checks a list, which starts with k, against the slice or array
// typ; a []byte is base64 text.
func (kc *keyChecker) listValue(typ reflect.Type, k byte) error {
	if typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Uint8 {
		if k != '"' {
			return kc.typeErr(typ)
		}
		kc.skip()
		return nil
	}
	if k != '[' {
		return kc.typeErr(typ)
	}
	kc.next() // '['
	if kc.kind() == ']' {
		kc.next()
		return nil
	}
	kc.path = append(kc.path, pathSeg{})
	for i := 0; ; i++ {
		kc.path[len(kc.path)-1].index = i
		if err := kc.value(typ.Elem()); err != nil {
			return err
		}
		if kc.next() == ']' {
			break
		}
	}
	kc.path = kc.path[:len(kc.path)-1]
	return nil
}

// scalar checks that a value, which starts with k, is a string, a boolean
// or a number as typ wants, and consumes it; a number's range is the
// decoder's to check.
func (kc *keyChecker) scalar(typ reflect.Type, k byte) error {
	switch typ.Kind() {
	case reflect.String:
		if k != '"' {
			return kc.typeErr(typ)
		}
	case reflect.Bool:
		if k != 't' && k != 'f' {
			return kc.typeErr(typ)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		if k != '-' && (k < '0' || k > '9') {
			return kc.typeErr(typ)
		}
	}
	kc.skip()
	return nil
}

// object consumes an object, refusing a key given twice, and calls
// member for each key, which must consume its value. The key is on the
// path while member runs.
func (kc *keyChecker) object(member func(key string) error) error {
	return kc.objectOf("", member)
}

// objectOf is object for an object whose keys belong to others as well:
// only the key ours (every key, when ours is "") may not be given twice.
func (kc *keyChecker) objectOf(ours string, member func(key string) error) error {
	kc.next() // '{'
	if kc.kind() == '}' {
		kc.next()
		return nil
	}
	seen := map[string]bool{}
	kc.path = append(kc.path, pathSeg{isKey: true})
	for {
		key := kc.str()
		kc.path[len(kc.path)-1].key = key
		if ours == "" || key == ours {
			if seen[key] {
				return kc.keyErr("duplicate key: given more than once in one object")
			}
			seen[key] = true
		}
		kc.next() // ':'
		if err := member(key); err != nil {
			return err
		}
		if kc.next() == '}' {
			break
		}
		kc.kind() // white space before the next key
	}
	kc.path = kc.path[:len(kc.path)-1]
	return nil
}

// args checks "args": an object whose keys are free, except "cni", an
// object whose keys are free, except "tapfwRules", a strict RuleLists.
func (kc *keyChecker) args() error {
	if kc.kind() != '{' {
		return kc.typeErr(argsConfType)
	}
	return kc.objectOf("cni", func(key string) error {
		if key != "cni" {
			kc.skip()
			return nil
		}
		switch kc.kind() {
		case 'n':
			kc.skip()
			return nil
		case '{':
		default:
			return kc.typeErr(reflect.TypeOf(map[string]json.RawMessage{}))
		}
		return kc.objectOf("tapfwRules", func(key string) error {
			if key != "tapfwRules" {
				kc.skip()
				return nil
			}
			return kc.value(ruleListsType)
		})
	})
}

func kindName(k byte) string {
	switch k {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func wantKind(typ reflect.Type) string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		if typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Uint8 {
			return "a string"
		}
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "a number"
	}
	return typ.String()
}

var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

// joinPath appends key to a field path; a key that is empty or holds
// other characters than letters, digits, '_', '.', '/' and '-' is quoted.
func joinPath(path, key string) string {
	if !plainKeyRE.MatchString(key) {
		key = fmt.Sprintf("%q", key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// structFields maps the JSON names of typ's fields to their types, as
// encoding/json names them: the tag's name, else the Go name; "-" left
// out; fields of embedded structs (without a tag name) flattened, a field
// of the outer struct winning over one of the same name inside.
func structFields(typ reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(typ); ok {
		return m.(map[string]reflect.Type)
	}
	out := map[string]reflect.Type{}
	var embedded []reflect.Type
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if name == "" && ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	for _, e := range embedded {
		for k, t := range structFields(e) {
			if _, ok := out[k]; !ok {
				out[k] = t
			}
		}
	}
	fieldCache.Store(typ, out)
	return out
}
