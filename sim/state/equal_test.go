package state

import (
	"net/netip"
	"reflect"
	"testing"
)

// TestEqualSeesEveryField: a change in any field of ServicePort, or of an
// Endpoint in either list, makes Equal false, so a field added later cannot
// be forgotten by the datapaths' change detection; the defaulted affinity
// timeout equals its default spelled out.
func TestEqualSeesEveryField(t *testing.T) {
	base := func() ServicePort {
		ep := Endpoint{IP: netip.MustParseAddr("10.244.1.2"), Port: 80, Node: "node1", Pod: "web-1", Zone: "a", Ready: true, Serving: true}
		return ServicePort{Namespace: "default", Name: "web", PortName: "http", Protocol: TCP,
			ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Endpoints: []Endpoint{ep}, NotReadyEndpoints: []Endpoint{ep}}
	}
	a, b := base(), base()
	if !a.Equal(&b) {
		t.Fatal("two equal ports differ")
	}
	b.AffinityTimeout = DefaultAffinityTimeout
	if !a.Equal(&b) {
		t.Error("the default affinity timeout spelled out differs from it left out")
	}
	v := reflect.ValueOf(&b).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		b = base()
		change(t, f.Name, v.Field(i))
		if a.Equal(&b) {
			t.Errorf("a change of %s is not seen", f.Name)
		}
	}
	for _, list := range []string{"Endpoints", "NotReadyEndpoints"} {
		ev := reflect.ValueOf(base().Endpoints[0])
		for i := range ev.NumField() {
			b = base()
			e := reflect.ValueOf(&b).Elem().FieldByName(list).Index(0)
			name := list + "[0]." + ev.Type().Field(i).Name
			change(t, name, e.Field(i))
			if a.Equal(&b) {
				t.Errorf("a change of %s is not seen", name)
			}
		}
	}
}

// change sets f to a value other than base()'s.
func change(t *testing.T, name string, f reflect.Value) {
	t.Helper()
	switch f.Kind() {
	case reflect.String:
		f.SetString(f.String() + "x")
	case reflect.Bool:
		f.SetBool(!f.Bool())
	case reflect.Int32:
		f.SetInt(f.Int() + 7)
	case reflect.Slice:
		f.Set(reflect.Append(f, reflect.Zero(f.Type().Elem())))
	default:
		switch f.Interface().(type) {
		case netip.Addr:
			f.Set(reflect.ValueOf(netip.MustParseAddr("10.96.7.7")))
		default:
			t.Fatalf("field %s of kind %s: teach change how to alter it", name, f.Kind())
		}
	}
}
