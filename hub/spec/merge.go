package spec

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Layer is one document that went into a device's effective config.
type Layer struct {
	Scope    Scope  `json:"scope"`
	Priority int    `json:"priority"`
	Version  uint64 `json:"version"`
}

// Effective is a device's effective configuration of one kind.
type Effective struct {
	Kind   string `json:"kind"`
	Device string `json:"device"`
	// Content is the merge of Layers, canonical JSON.
	Content json.RawMessage `json:"content"`
	// Hash is the SHA-256 of Content, in hex: what the device reports
	// when it has applied it.
	Hash string `json:"hash"`
	// Layers are the documents merged, in order (later ones win).
	Layers []Layer `json:"layers"`
	// Sources gives, for the JSON Pointer of every value that is not an
	// object, the index in Layers of the document that set it.
	Sources map[string]int `json:"sources"`
}

// Effective merges the documents of a kind that apply to a device: the
// default, the selector documents its labels match from the lowest
// priority to the highest, then the device's own, each a JSON merge patch
// (RFC 7396) over the ones before (a null removes a key). Templated
// strings are then rendered for the device, and the result is checked
// against the kind's schema: a *SchemaError says what the device would
// get wrong.
func (s *Store) Effective(kind string, dev Device) (Effective, error) {
	kd, err := s.kinds.get(kind)
	if err != nil {
		return Effective{}, err
	}
	docs, err := s.Documents(kind)
	if err != nil {
		return Effective{}, err
	}
	var layers []Version
	for _, d := range docs {
		if d.Scope.matches(dev.ID, dev.Labels) {
			layers = append(layers, d)
		}
	}
	eff, err := merge(kind, dev, layers)
	if err != nil {
		return Effective{}, err
	}
	if err := kd.validateValue(eff.Content, false); err != nil {
		return Effective{}, fmt.Errorf("spec: %s config of %s: %w", kind, dev.ID, err)
	}
	return eff, nil
}

// merge applies layers (in layer order), records who set what, and renders
// the templates for dev.
func merge(kind string, dev Device, layers []Version) (Effective, error) {
	device := dev.ID
	eff := Effective{Kind: kind, Device: device, Layers: []Layer{}, Sources: map[string]int{}}
	doc := map[string]any{}
	src := map[string]int{}
	for i, l := range layers {
		var patch map[string]any
		dec := json.NewDecoder(bytes.NewReader(l.Content))
		dec.UseNumber()
		if err := dec.Decode(&patch); err != nil {
			return Effective{}, fmt.Errorf("spec: %s %s version %d: %w", kind, l.Scope, l.Number, err)
		}
		mergePatch(doc, patch, "", i, src)
		eff.Layers = append(eff.Layers, Layer{Scope: l.Scope, Priority: l.Priority, Version: l.Number})
	}
	rendered, err := render(doc, dev, "")
	if err != nil {
		return Effective{}, fmt.Errorf("spec: %s config of %s: %w: %w", kind, device, ErrInvalid, err)
	}
	content, err := json.Marshal(rendered)
	if err != nil {
		return Effective{}, fmt.Errorf("spec: merge %s for %s: %w", kind, device, err)
	}
	sum := sha256.Sum256(content)
	eff.Content, eff.Hash, eff.Sources = content, hex.EncodeToString(sum[:]), src
	return eff, nil
}

// mergePatch applies patch to doc (RFC 7396), recording in src that layer
// set each leaf below the pointer at.
func mergePatch(doc, patch map[string]any, at string, layer int, src map[string]int) {
	for k, pv := range patch {
		ptr := at + "/" + escapePointer(k)
		pm, isObj := pv.(map[string]any)
		dm, wasObj := doc[k].(map[string]any)
		if !isObj || !wasObj {
			forget(src, ptr) // replaced or removed whole
		}
		if pv == nil {
			delete(doc, k)
			continue
		}
		if !isObj {
			doc[k] = pv
			src[ptr] = layer
			continue
		}
		if !wasObj {
			dm = map[string]any{}
			doc[k] = dm
		}
		delete(src, ptr) // an object that was empty is not a leaf any more
		mergePatch(dm, pm, ptr, layer, src)
		if len(pm) == 0 && len(dm) == 0 {
			src[ptr] = layer // an empty object is a value too
		}
	}
}

// forget drops the sources at ptr and below it.
func forget(src map[string]int, ptr string) {
	for p := range src {
		if p == ptr || strings.HasPrefix(p, ptr+"/") {
			delete(src, p)
		}
	}
}

// escapePointer escapes a key for a JSON Pointer (RFC 6901).
func escapePointer(k string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(k)
}

// layerRank orders scopes: default, selectors, devices.
func layerRank(s Scope) int {
	switch {
	case s.Device != "":
		return 2
	case len(s.Selector) > 0:
		return 1
	}
	return 0
}

// sortLayers puts documents in layer order: the default, the selector
// documents by priority then selector text, the devices' by ID.
func sortLayers(vs []Version) { slices.SortFunc(vs, compareLayers) }

// compareLayers orders two documents' latest versions as sortLayers does.
func compareLayers(a, b Version) int {
	return cmp.Or(cmp.Compare(layerRank(a.Scope), layerRank(b.Scope)), cmp.Compare(a.Priority, b.Priority),
		cmp.Compare(SelectorString(a.Scope.Selector), SelectorString(b.Scope.Selector)), cmp.Compare(a.Scope.Device, b.Scope.Device))
}

// Diff lists what changed from one JSON object to another, by JSON
// Pointer, in pointer order.
func Diff(from, to json.RawMessage) ([]Change, error) {
	var a, b map[string]any
	if err := decodeObject(from, &a); err != nil {
		return nil, fmt.Errorf("spec: diff: from: %w", err)
	}
	if err := decodeObject(to, &b); err != nil {
		return nil, fmt.Errorf("spec: diff: to: %w", err)
	}
	var out []Change
	diffObjects(a, b, "", &out)
	slices.SortFunc(out, func(x, y Change) int { return cmp.Compare(x.Pointer, y.Pointer) })
	return out, nil
}

// Change is one difference between two documents.
type Change struct {
	Pointer string `json:"pointer"`
	// Op is "add", "remove" or "replace".
	Op   string `json:"op"`
	From any    `json:"from,omitempty"`
	To   any    `json:"to,omitempty"`
}

func decodeObject(raw json.RawMessage, v *map[string]any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

func diffObjects(a, b map[string]any, at string, out *[]Change) {
	for _, k := range slices.Sorted(maps.Keys(a)) {
		ptr := at + "/" + escapePointer(k)
		bv, ok := b[k]
		if !ok {
			*out = append(*out, Change{Pointer: ptr, Op: "remove", From: a[k]})
			continue
		}
		am, aObj := a[k].(map[string]any)
		bm, bObj := bv.(map[string]any)
		if aObj && bObj {
			diffObjects(am, bm, ptr, out)
			continue
		}
		if !jsonEqual(a[k], bv) {
			*out = append(*out, Change{Pointer: ptr, Op: "replace", From: a[k], To: bv})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			*out = append(*out, Change{Pointer: at + "/" + escapePointer(k), Op: "add", To: b[k]})
		}
	}
}

func jsonEqual(x, y any) bool {
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}
