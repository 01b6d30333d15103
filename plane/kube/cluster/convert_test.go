package cluster

import (
	"os"
	"strings"
	"testing"
)

func TestConvertRetired(t *testing.T) {
	seed, err := os.ReadFile("../../../sim/testdata/seed/06-ingress-http.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rbac := "apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: ClusterRole\nmetadata: {name: nginx-ingress-clusterrole}\nrules: [{apiGroups: [''], resources: [services], verbs: [get]}]\n"
	keep := "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n"
	out, notes, err := convertRetired([]byte(string(seed)+"\n---\n"+rbac+"---\n"+keep), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{`"apiVersion":"networking.k8s.io/v1"`, `"service":{"name":`, `"apiVersion":"rbac.authorization.k8s.io/v1"`, "nginx-ingress-clusterrole", keep} {
		if !strings.Contains(s, want) {
			t.Errorf("converted manifest lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "v1beta1") {
		t.Errorf("a v1beta1 is left:\n%s", s)
	}
	if len(notes) != 2 || !strings.Contains(notes[0], "converted from extensions/v1beta1 to networking.k8s.io/v1") {
		t.Errorf("notes %q", notes)
	}
	same, notes, err := convertRetired([]byte(keep), "k.yaml")
	if err != nil || string(same) != keep || notes != nil {
		t.Errorf("a served manifest changed: %q %q %v", same, notes, err)
	}
}
