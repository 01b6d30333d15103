// Package stats holds the statistics scenarios assert with.
package stats

import (
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/stat/distuv"
)

// ChiSquare is Pearson's goodness-of-fit test of observed counts against
// expected counts.
type ChiSquare struct {
	Statistic float64
	DF        int
	// P is the probability of a statistic at least this large if the counts
	// really came from the expected distribution.
	P float64
}

// ChiSquareUniform tests counts against a uniform distribution over them.
func ChiSquareUniform(counts []int) (ChiSquare, error) {
	n := 0
	for _, c := range counts {
		n += c
	}
	exp := make([]float64, len(counts))
	for i := range exp {
		exp[i] = float64(n) / float64(len(counts))
	}
	return ChiSquareTest(counts, exp)
}

// ChiSquareTest tests observed counts against expected ones (same length, at
// least two categories, every expected count positive). The approximation is
// sound when every expected count is at least 5; it returns an error otherwise
// so that callers size their samples.
func ChiSquareTest(observed []int, expected []float64) (ChiSquare, error) {
	if len(observed) != len(expected) || len(observed) < 2 {
		return ChiSquare{}, fmt.Errorf("chi-square: need two or more categories, got %d observed and %d expected", len(observed), len(expected))
	}
	var x2 float64
	for i, o := range observed {
		e := expected[i]
		if e < 5 {
			return ChiSquare{}, fmt.Errorf("chi-square: expected count %.2f < 5 in category %d: sample too small", e, i)
		}
		d := float64(o) - e
		x2 += d * d / e
	}
	df := len(observed) - 1
	p := distuv.ChiSquared{K: float64(df)}.Survival(x2)
	return ChiSquare{Statistic: x2, DF: df, P: p}, nil
}

// Summary is a sample's median, spread and tail percentiles.
type Summary struct {
	N                          int
	Min, Median, P90, P99, Max float64
}

// Summarize sorts a copy of xs and returns its order statistics (nearest-rank
// percentiles).
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return s[i]
	}
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Summary{N: len(s), Min: s[0], Median: med, P90: q(0.9), P99: q(0.99), Max: s[len(s)-1]}
}
