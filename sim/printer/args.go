package printer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/svcsim/svcsim/sim"
)

// Selection is one kind and the names asked for; no names lists the kind.
type Selection struct {
	Kind  string // canonical: Service, Pod, ...
	Names []string
}

// ParseArgs reads kubectl's resource arguments the way kubectl get and
// describe take them: "TYPE" (list), "TYPE NAME..." (several names),
// "TYPE1,TYPE2 [NAME...]" (each name looked up in each type), or
// "TYPE/NAME..." (each argument names its own type; every argument must then
// have that form). Selections keep the order of first mention.
func ParseArgs(args []string) ([]Selection, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("you must specify the type of resource to get, e.g. svcsim get pods")
	}
	var out []Selection
	index := map[string]int{}
	add := func(kind string, names ...string) error {
		k, err := sim.CanonicalKind(kind)
		if err != nil {
			return err
		}
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, Selection{Kind: k})
		}
		for _, n := range names {
			if !slices.Contains(out[i].Names, n) {
				out[i].Names = append(out[i].Names, n)
			}
		}
		return nil
	}
	if strings.Contains(args[0], "/") {
		for _, a := range args {
			kind, name, ok := strings.Cut(a, "/")
			if !ok {
				return nil, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'svcsim get resource/<resource_name>' instead of 'svcsim get resource resource/<resource_name>'): %q has no type", a)
			}
			if kind == "" || name == "" || strings.Contains(name, "/") {
				return nil, fmt.Errorf("arguments in resource/name form must have a single resource and name: %q", a)
			}
			if err := add(kind, name); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	for _, n := range args[1:] {
		if strings.Contains(n, "/") {
			return nil, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'svcsim get resource/<resource_name>' instead of 'svcsim get resource resource/<resource_name>')")
		}
	}
	for _, kind := range strings.Split(args[0], ",") {
		if kind == "" {
			continue
		}
		if err := add(kind, args[1:]...); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("you must specify the type of resource to get, e.g. svcsim get pods")
	}
	return out, nil
}

// selections are the request's Args, or its Kind and Name.
func (r Request) selections() ([]Selection, error) {
	if len(r.Args) > 0 {
		return ParseArgs(r.Args)
	}
	k, err := sim.CanonicalKind(r.Kind)
	if err != nil {
		return nil, err
	}
	sel := Selection{Kind: k}
	if r.Name != "" {
		sel.Names = []string{r.Name}
	}
	return []Selection{sel}, nil
}

// KindName returns kubectl's name of a kind in messages ("service",
// "deployment.apps"); unknown kinds are returned lower-cased.
func KindName(kind string) string {
	k, err := sim.CanonicalKind(kind)
	if err != nil {
		return strings.ToLower(kind)
	}
	if singular, _, err := sim.KindNames(k); err == nil {
		return singular
	}
	return strings.ToLower(k)
}

// clusterScopedKind reports whether kind's objects have no namespace.
func clusterScopedKind(kind string) bool {
	_, namespaced, err := sim.KindNames(kind)
	return err == nil && !namespaced
}
