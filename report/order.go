package report

import (
	"regexp"
	"sort"
	"strings"

	"github.com/svcsim/svcsim/report/results"
)

// groupOrder is the seed's order of topics; unknown groups follow by name.
var groupOrder = []string{
	results.GroupService,
	results.GroupSelectorless,
	results.GroupProxyModes,
	results.GroupMultiPort,
	results.GroupDiscovery,
	results.GroupHeadless,
	results.GroupPublishing,
	results.GroupIngress,
	results.GroupGateway,
	results.GroupIsolation,
	results.GroupFaults,
	results.GroupScale,
}

func rank(order []string, s string) int {
	for i, o := range order {
		if o == s {
			return i
		}
	}
	return len(order)
}

// sortByOrder sorts names by their rank in order, then alphabetically.
func sortByOrder(names []string, order []string) {
	sort.SliceStable(names, func(i, j int) bool {
		ri, rj := rank(order, names[i]), rank(order, names[j])
		if ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
}

// Column order of datapaths. The report does not link the datapaths (it
// reads results files, perhaps from another machine), so each datapath's
// position comes from its results: the harness and the benchmark copy
// results.DatapathInfo from the datapath's descriptor (package modes,
// Report.Order) into every file. Datapaths whose files carry none follow, by
// name.

// datapathOrder maps each datapath named with an Info in results or benches
// to its recorded Order.
func datapathOrder(rs []results.Result, bs []results.Bench) map[string]int {
	order := map[string]int{}
	for _, r := range rs {
		if r.Info != nil {
			order[r.Mode] = r.Info.Order
		}
	}
	for _, b := range bs {
		if b.Info != nil {
			order[b.Datapath] = b.Info.Order
		}
	}
	return order
}

// datapathLess orders datapaths a and b by their recorded order, then name.
func datapathLess(order map[string]int, a, b string) bool {
	oa, ka := order[a]
	ob, kb := order[b]
	switch {
	case ka && kb && oa != ob:
		return oa < ob
	case ka != kb:
		return ka
	}
	return a < b
}

// sortDatapaths sorts datapath names into column order.
func sortDatapaths(names []string, order map[string]int) {
	sort.SliceStable(names, func(i, j int) bool { return datapathLess(order, names[i], names[j]) })
}

// modesOf lists every mode or datapath named in set, in column order.
func modesOf(set *results.Set) []string {
	seen := map[string]bool{}
	var out []string
	add := func(m string) {
		if m != "" && !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, r := range set.Results {
		add(r.Mode)
	}
	sortDatapaths(out, datapathOrder(set.Results, set.Benches))
	return out
}

// palette assigns each mode and datapath a stable colour index, so a
// datapath has the same colour in every chart.
func palette(set *results.Set) map[string]int {
	seen := map[string]bool{}
	var names []string
	for _, r := range set.Results {
		if !seen[r.Mode] {
			seen[r.Mode] = true
			names = append(names, r.Mode)
		}
	}
	for _, b := range set.Benches {
		if !seen[b.Datapath] {
			seen[b.Datapath] = true
			names = append(names, b.Datapath)
		}
	}
	sortDatapaths(names, datapathOrder(set.Results, set.Benches))
	m := map[string]int{}
	for i, n := range names {
		m[n] = i
	}
	return m
}

var unsafeID = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// anchor is the HTML id of one result's detail.
func anchor(scenario, mode string) string {
	return "r-" + unsafeID.ReplaceAllString(scenario, "_") + "--" + unsafeID.ReplaceAllString(mode, "_")
}

func slug(s string) string {
	return strings.Trim(unsafeID.ReplaceAllString(strings.ToLower(s), "-"), "-")
}
