package sim

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// applyConfig returns what kubectl apply keeps and sends for obj: cfg, the
// last-applied configuration (the manifest as written, raw, with the
// annotation itself removed, an empty annotations map left in place, and the
// namespace filled in; without raw, obj's encoding pruned of empty values),
// and modified, the same object carrying cfg in its annotation, which the
// three-way merge compares with the previous cfg and the live object.
func applyConfig(obj runtime.Object, raw []byte, namespace string) (cfg, modified []byte, err error) {
	var v map[string]any
	if raw != nil {
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, nil, fmt.Errorf("read manifest: %w", err)
		}
	} else {
		b, err := prunedJSON(obj)
		if err != nil {
			return nil, nil, err
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, nil, err
		}
	}
	md, _ := v["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		v["metadata"] = md
	}
	ann, _ := md["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
	}
	delete(ann, LastAppliedAnnotation)
	md["annotations"] = ann
	if ns, _ := md["namespace"].(string); ns == "" && namespace != "" {
		md["namespace"] = namespace
	}
	if cfg, err = json.Marshal(v); err != nil {
		return nil, nil, fmt.Errorf("encode last-applied configuration: %w", err)
	}
	cfg = append(cfg, '\n')
	ann[LastAppliedAnnotation] = string(cfg)
	if modified, err = json.Marshal(v); err != nil {
		return nil, nil, fmt.Errorf("encode applied configuration: %w", err)
	}
	return cfg, modified, nil
}

// setLastApplied records cfg in obj's annotation.
func setLastApplied(obj runtime.Object, cfg []byte) {
	m, _ := meta.Accessor(obj)
	ann := m.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[LastAppliedAnnotation] = string(cfg)
	m.SetAnnotations(ann)
}

// prunedJSON encodes obj without null values and empty objects, which is
// what the manifest held before it became a Go value.
func prunedJSON(obj runtime.Object) ([]byte, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	v, _ = prune(v)
	return json.Marshal(v)
}

func prune(v any) (any, bool) {
	switch x := v.(type) {
	case nil:
		return nil, false
	case map[string]any:
		for k, e := range x {
			pe, keep := prune(e)
			if !keep {
				delete(x, k)
				continue
			}
			x[k] = pe
		}
		return x, len(x) > 0
	case []any:
		for i, e := range x {
			if pe, keep := prune(e); keep {
				x[i] = pe
			} else if _, isMap := e.(map[string]any); isMap {
				x[i] = map[string]any{}
			}
		}
		return x, true
	}
	return v, true
}

// threeWayMerge computes what `kubectl apply` sends for an existing object
// (a strategic three-way merge of the last-applied configuration, modified
// (see applyConfig) and the current object) and the resulting object.
func threeWayMerge(ki *kindInfo, current runtime.Object, modified []byte) (runtime.Object, bool, error) {
	cm, _ := meta.Accessor(current)
	original := []byte(cm.GetAnnotations()[LastAppliedAnnotation])
	cur, err := json.Marshal(current)
	if err != nil {
		return nil, false, err
	}
	schemaMeta, err := strategicpatch.NewPatchMetaFromStruct(ki.new())
	if err != nil {
		return nil, false, err
	}
	if len(original) == 0 {
		original = nil
	}
	patch, err := strategicpatch.CreateThreeWayMergePatch(original, modified, cur, schemaMeta, true)
	if err != nil {
		return nil, false, fmt.Errorf("compute apply patch for %s %s: %w", ki.Kind, cm.GetName(), err)
	}
	if string(patch) == "{}" {
		return nil, false, nil
	}
	merged, err := mergePatch(ki, cur, patch)
	if err != nil {
		return nil, false, err
	}
	return merged, true, nil
}

func mergePatch(ki *kindInfo, cur, patch []byte) (runtime.Object, error) {
	out, err := strategicpatch.StrategicMergePatch(cur, patch, ki.new())
	if err != nil {
		return nil, fmt.Errorf("apply patch: %w", err)
	}
	obj := ki.new()
	if err := json.Unmarshal(out, obj); err != nil {
		return nil, fmt.Errorf("decode patched %s: %w", ki.Kind, err)
	}
	ki.setTypeMeta(obj)
	return obj, nil
}
