package difftest

import (
	"fmt"
	"testing"
)

// TestModelAnswers pins the embedded model's answer to every case: the
// genuine API server's (Want) unless the case says why not (Model, Why).
// The root test in plane/kube holds the server to the same pins.
func TestModelAnswers(t *testing.T) {
	names := map[string]bool{}
	for i, c := range Cases {
		if names[c.Name] {
			t.Errorf("case name %q used twice", c.Name)
		}
		names[c.Name] = true
		if (c.Model == "") != (c.Why == "") {
			t.Errorf("%s: Model and Why go together", c.Name)
		}
		t.Run(c.Name, func(t *testing.T) {
			got, err := RunModel(c, fmt.Sprintf("case%03d", i))
			if err != nil {
				t.Fatal(err)
			}
			if got.Err != c.ModelWant() {
				t.Errorf("the model said\n\t%q\nthe case pins\n\t%q", got.Err, c.ModelWant())
			}
		})
	}
}
