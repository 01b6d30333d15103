package printer

import (
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// gatewayHeaders are the Gateway API CRDs' additionalPrinterColumns, as
// kubectl prints them (wide adds the priority-1 columns).
var gatewayHeaders = map[string][2][]string{
	"GatewayClass":   {{"NAME", "CONTROLLER", "ACCEPTED", "AGE"}, {"DESCRIPTION"}},
	"Gateway":        {{"NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"}, nil},
	"HTTPRoute":      {{"NAME", "HOSTNAMES", "AGE"}, nil},
	"ReferenceGrant": {{"NAME", "AGE"}, nil},
}

// conditionStatus is a condition's status as a column shows it ("" when
// absent, as kubectl prints a missing JSONPath).
func conditionStatus(cs []metav1.Condition, typ string) string {
	if c := meta.FindStatusCondition(cs, typ); c != nil {
		return string(c.Status)
	}
	return ""
}

func gatewayRow(obj runtime.Object, now time.Time) (row, wide []string) {
	switch x := obj.(type) {
	case *gwv1.GatewayClass:
		desc := ""
		if x.Spec.Description != nil {
			desc = *x.Spec.Description
		}
		return []string{x.Name, string(x.Spec.ControllerName), conditionStatus(x.Status.Conditions, "Accepted"), Age(x.CreationTimestamp, now)}, []string{desc}
	case *gwv1.Gateway:
		addr := ""
		if len(x.Status.Addresses) > 0 {
			addr = x.Status.Addresses[0].Value
		}
		return []string{x.Name, string(x.Spec.GatewayClassName), addr, conditionStatus(x.Status.Conditions, "Programmed"), Age(x.CreationTimestamp, now)}, nil
	case *gwv1.HTTPRoute:
		hs := make([]string, len(x.Spec.Hostnames))
		for i, h := range x.Spec.Hostnames {
			hs[i] = `"` + string(h) + `"`
		}
		col := ""
		if len(hs) > 0 {
			col = "[" + strings.Join(hs, ",") + "]"
		}
		return []string{x.Name, col, Age(x.CreationTimestamp, now)}, nil
	case *gwv1.ReferenceGrant:
		return []string{x.Name, Age(x.CreationTimestamp, now)}, nil
	}
	return nil, nil
}
