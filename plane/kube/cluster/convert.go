package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/svcsim/svcsim/sim"
)

// retired maps API versions a 1.37 API server no longer serves, with the
// kind, to the served version they convert to.
var retired = map[string]string{
	"extensions/v1beta1/Ingress":         "networking.k8s.io/v1",
	"networking.k8s.io/v1beta1/Ingress":  "networking.k8s.io/v1",
	"rbac.authorization.k8s.io/v1beta1/": "rbac.authorization.k8s.io/v1",
}

// convertRetired rewrites the documents of data whose API version the
// server no longer serves into served versions: Ingress through the
// model's v1beta1 converter (serviceName/servicePort become
// backend.service), RBAC v1beta1 by its version alone (v1 has the same
// schema). It returns the new manifest and a line per converted object.
func convertRetired(data []byte, source string) ([]byte, []string, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	var notes []string
	changed := false
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: split documents: %w", source, err)
		}
		var tm struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        struct{ Name string } `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil || tm.Kind == "" {
			docs = append(docs, doc)
			continue
		}
		to, ok := retired[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			to, ok = retired[tm.APIVersion+"/"]
		}
		if !ok {
			docs = append(docs, doc)
			continue
		}
		var out []byte
		if tm.Kind == "Ingress" {
			objs, err := sim.Decode(doc, source)
			if err != nil || len(objs) != 1 {
				return nil, nil, fmt.Errorf("%s: convert %s %s: %w", source, tm.APIVersion, tm.Kind, err)
			}
			if out, err = json.Marshal(objs[0].Obj); err != nil {
				return nil, nil, err
			}
		} else {
			var m map[string]any
			if err := yaml.Unmarshal(doc, &m); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", source, err)
			}
			m["apiVersion"] = to
			var err error
			if out, err = json.Marshal(m); err != nil {
				return nil, nil, err
			}
		}
		docs = append(docs, out)
		changed = true
		notes = append(notes, fmt.Sprintf("%s/%s: converted from %s to %s (the API server no longer serves %s)",
			tm.Kind, tm.Metadata.Name, tm.APIVersion, to, tm.APIVersion))
	}
	if !changed {
		return data, nil, nil
	}
	return bytes.Join(docs, []byte("\n---\n")), notes, nil
}
