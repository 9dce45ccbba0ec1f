package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Request bodies are read strictly, by one decoder for every route that
// takes one:
//
//   - a body needs Content-Type: application/json (a charset parameter, if
//     any, must be utf-8); any other type, or none, is refused with 415.
//     Requiring the type keeps browsers from sending a body cross-site
//     without a CORS preflight (text/plain, form types and a typeless body
//     are "simple" requests);
//   - at most maxBody bytes (413);
//   - exactly one JSON object: not null, not an array, no trailing data;
//   - every key exactly as documented: encoding/json would match "Uses" or
//     "USES" to "uses", and let the last of two equal keys win; both are
//     refused, as are keys the request type does not have;
//   - null only where it means something (a label set to null is removed);
//     a field is either left out or given a value of its type.
//
// Errors are 400 problems naming the key (as a dotted path) and the byte
// offset.

// maxBody is the largest request body accepted.
const maxBody = 64 << 10

// decodeBody reads r's body strictly into v, a pointer to a struct. On
// failure it has answered with a problem and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeInto(w, r, v, false)
}

// decodeOptionalBody is decodeBody for a body that may be left out: an
// empty body (with or without a Content-Type) leaves v as it is.
func decodeOptionalBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeInto(w, r, v, true)
}

func decodeInto(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	body, ok := readBody(w, r, maxBody, optional)
	if !ok || body == nil {
		return ok
	}
	if err := strictUnmarshal(body, v); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// readBody checks the request's Content-Type and reads its body, at most
// limit bytes. It returns a nil body only when optional and the body is
// empty. On failure it has answered with a problem and returns false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, optional bool) ([]byte, bool) {
	types := []string{"application/json"}
	if r.Method == http.MethodPatch {
		types = append(types, "application/merge-patch+json") // RFC 7396
	}
	ct := r.Header.Get("Content-Type")
	if ct != "" {
		if err := checkJSONType(ct, types); err != nil {
			unsupportedType(w, types, err.Error())
			return nil, false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", limit))
		} else {
			writeProblem(w, http.StatusBadRequest, "reading request body: "+err.Error())
		}
		return nil, false
	}
	if len(body) == 0 {
		if optional {
			return nil, true
		}
		writeProblem(w, http.StatusBadRequest, "empty body: a JSON object is required")
		return nil, false
	}
	if ct == "" {
		unsupportedType(w, types, "Content-Type is missing: send the JSON body with Content-Type: application/json")
		return nil, false
	}
	return body, true
}

// checkJSONType accepts one of types, with no parameter but charset=utf-8.
func checkJSONType(ct string, types []string) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %v: send %s", ct, err, types[0])
	}
	if !slices.Contains(types, mt) {
		return fmt.Errorf("Content-Type %s is not accepted: send the body as JSON with Content-Type: %s", mt, strings.Join(types, " or "))
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return fmt.Errorf("Content-Type %q: parameter %s=%s is not accepted (JSON is UTF-8)", ct, k, v)
		}
	}
	return nil
}

func unsupportedType(w http.ResponseWriter, types []string, detail string) {
	w.Header().Set("Accept", strings.Join(types, ", ")) // RFC 9110, section 15.5.16
	writeProblem(w, http.StatusUnsupportedMediaType, detail)
}

// strictUnmarshal decodes body, one JSON object, into v (a pointer to a
// struct) with the rules above.
func strictUnmarshal(body []byte, v any) error {
	if err := checkJSON(body, reflect.TypeOf(v).Elem()); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s: got a JSON %s, want %s (byte %d)", quoteKey(jsonPath(reflect.TypeOf(v).Elem(), te.Field)), te.Value, kindOf(te.Type), te.Offset)
		}
		// checkJSON has seen the syntax, keys and nulls: what is left is
		// a value encoding/json cannot hold.
		return fmt.Errorf("invalid JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// checkJSON checks body's syntax and shape against t, a struct type (or
// nil to check only the syntax, the object and duplicate keys): see the
// rules above. It does not check the types of scalars; json.Decode does.
func checkJSON(body []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	c := checker{body: body, dec: dec}
	tok, err := dec.Token()
	if err != nil {
		return c.syntax(err)
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("the body must be a JSON object, not %s", describe(tok))
	}
	if err := c.object(t, ""); err != nil {
		return err
	}
	off := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("trailing data after the JSON object (byte %d)", off)
	}
	return nil
}

// checker walks a JSON document token by token, with the Go type each
// value is decoded into (nil where unknown).
type checker struct {
	body []byte
	dec  *json.Decoder
}

// keyStart returns the offset of the opening quote of the key that ends
// at end.
func (c checker) keyStart(end int64) int64 {
	for i := end - 2; i >= 0; i-- {
		if c.body[i] != '"' {
			continue
		}
		n := 0
		for j := i - 1; j >= 0 && c.body[j] == '\\'; j-- {
			n++
		}
		if n%2 == 0 {
			return i
		}
	}
	return end
}

func (c checker) syntax(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("invalid JSON: the body ends in the middle of a value (byte %d)", c.dec.InputOffset())
	}
	return fmt.Errorf("invalid JSON at byte %d: %v", c.dec.InputOffset(), err)
}

// object checks the members of an object whose '{' was read, up to and
// including its '}'. t is the struct or map type it decodes into, or nil.
func (c checker) object(t reflect.Type, path string) error {
	var fields map[string]reflect.Type
	var elem reflect.Type
	nullOK := true
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = structFields(t)
	case t.Kind() == reflect.Map:
		elem, nullOK = t.Elem(), nullable(t.Elem())
	default:
		t = nil // a type mismatch: json.Decode reports it
	}
	seen := map[string]bool{}
	for c.dec.More() {
		tok, err := c.dec.Token()
		if err != nil {
			return c.syntax(err)
		}
		key := tok.(string) // Token returns object keys as strings
		at := c.keyStart(c.dec.InputOffset())
		p := joinKey(path, key)
		if seen[key] {
			return fmt.Errorf("%s: duplicate key (byte %d)", quoteKey(p), at)
		}
		seen[key] = true
		vt := elem
		if fields != nil {
			var ok bool
			vt, ok = fields[key]
			if !ok {
				for name := range fields {
					if strings.EqualFold(name, key) {
						return fmt.Errorf("%s: unknown field (byte %d): keys are case-sensitive, did you mean %q?", quoteKey(p), at, name)
					}
				}
				return fmt.Errorf("%s: unknown field (byte %d)", quoteKey(p), at)
			}
			nullOK = false
		}
		if err := c.value(vt, p, nullOK); err != nil {
			return err
		}
	}
	if _, err := c.dec.Token(); err != nil { // '}'
		return c.syntax(err)
	}
	return nil
}

// value checks the next value, decoded into t (nil if unknown); null is
// refused unless nullOK.
func (c checker) value(t reflect.Type, path string, nullOK bool) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && reflect.PointerTo(t).Implements(unmarshalerType) {
		return c.selfDecoding(t, path, nullOK)
	}
	if t != nil && t.Kind() == reflect.Interface {
		t = nil
	}
	tok, err := c.dec.Token()
	if err != nil {
		return c.syntax(err)
	}
	switch tok {
	case json.Delim('{'):
		return c.object(t, path)
	case json.Delim('['):
		var elem reflect.Type
		nullOK := true
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem, nullOK = t.Elem(), nullable(t.Elem())
		}
		for i := 0; c.dec.More(); i++ {
			if err := c.value(elem, fmt.Sprintf("%s[%d]", path, i), nullOK); err != nil {
				return err
			}
		}
		if _, err := c.dec.Token(); err != nil { // ']'
			return c.syntax(err)
		}
	case nil:
		if !nullOK {
			return fmt.Errorf("%s: null is not allowed (byte %d): leave the key out or give it a value", quoteKey(path), c.dec.InputOffset())
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// unknownField finds the key in an error of a decoder that refuses
// unknown fields.
var unknownField = regexp.MustCompile(`unknown field "([^"]*)"`)

// selfDecoding checks the next value, of a type t that decodes itself (a
// duration, a trigger): it is decoded here, so that its error names the
// key it is at (encoding/json passes such an error on without the key).
func (c checker) selfDecoding(t reflect.Type, path string, nullOK bool) error {
	at := c.dec.InputOffset()
	for at < int64(len(c.body)) && strings.IndexByte(": \t\r\n", c.body[at]) >= 0 {
		at++
	}
	var raw json.RawMessage
	if err := c.dec.Decode(&raw); err != nil {
		return c.syntax(err)
	}
	if string(raw) == "null" {
		if !nullOK {
			return fmt.Errorf("%s: null is not allowed (byte %d): leave the key out or give it a value", quoteKey(path), at)
		}
		return nil
	}
	err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("%s: got a JSON %s, want %s (byte %d)", quoteKey(joinKey(path, jsonPath(t, te.Field))), te.Value, kindOf(te.Type), at+te.Offset)
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("%s: unknown field (in the value at byte %d)", quoteKey(joinKey(path, m[1])), at)
	}
	return fmt.Errorf("%s: %v (byte %d)", quoteKey(path), err, at)
}

// jsonPath turns the Field of an encoding/json error, decoding into t, into
// the key path of the body: the names of embedded structs, which
// encoding/json puts in it, are not keys.
func jsonPath(t reflect.Type, field string) string {
	var keys []string
	for seg := range strings.SplitSeq(field, ".") {
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			keys = append(keys, seg)
			if t != nil && (t.Kind() == reflect.Map || t.Kind() == reflect.Slice) {
				t = t.Elem()
			} else {
				t = nil
			}
			continue
		}
		if f, ok := t.FieldByName(seg); ok && f.Anonymous && f.Tag.Get("json") == "" {
			t = f.Type
			continue
		}
		keys = append(keys, seg)
		t = structFields(t)[seg]
	}
	return strings.Join(keys, ".")
}

// nullable reports whether null is a meaningful value of t.
func nullable(t reflect.Type) bool {
	return t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// structFields returns the JSON keys of struct type t, as encoding/json
// names them, and their types.
func structFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	addFields(m, t)
	fieldCache.Store(t, m)
	return m
}

func addFields(m map[string]reflect.Type, t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(m, ft) // promoted fields (no request type has clashes)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
}

// joinKey appends key to a dotted path.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// quoteKey names a key path in an error.
func quoteKey(path string) string {
	if path == "" {
		return "body"
	}
	return strconv.Quote(path)
}

// describe names a JSON token for an error.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return string(v)
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	}
	return fmt.Sprintf("%v", tok)
}

// kindOf names the JSON kind a Go type wants.
func kindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("an integer (%s)", t.Kind())
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}
