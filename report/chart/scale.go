package chart

import (
	"math"
	"strconv"
	"strings"
)

// Scale maps a data interval onto [0, 1], linearly or by log10.
type Scale struct {
	Min, Max float64
	Log      bool
}

// Norm returns where v lies between Min (0) and Max (1). Values outside the
// domain map outside [0, 1]; non-positive values on a log scale map to 0.
func (s Scale) Norm(v float64) float64 {
	lo, hi := s.Min, s.Max
	if s.Log {
		if v <= 0 || lo <= 0 || hi <= 0 {
			return 0
		}
		v, lo, hi = math.Log10(v), math.Log10(lo), math.Log10(hi)
	}
	if hi == lo {
		return 0.5
	}
	return (v - lo) / (hi - lo)
}

// WantLog reports whether values spanning [lo, hi] read better on a log axis:
// all positive and at least 20x apart (a sweep of 100..10000 Services does,
// a throughput of 19k..22k req/s does not).
func WantLog(lo, hi float64) bool {
	return lo > 0 && hi/lo >= 20
}

// LinearTicks returns "nice" tick values (1, 2 or 5 times a power of ten
// apart) covering [lo, hi] with at most about maxTicks ticks, and the
// widened domain they span. A degenerate interval is widened around its
// value.
func LinearTicks(lo, hi float64, maxTicks int) (ticks []float64, nlo, nhi float64) {
	if maxTicks < 2 {
		maxTicks = 2
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	if lo == hi {
		if lo == 0 {
			hi = 1
		} else {
			d := math.Abs(lo) / 2
			lo, hi = lo-d, hi+d
		}
	}
	mant, exp := niceStep((hi - lo) / float64(maxTicks-1))
	// Work in integer multiples of the step so the ticks print as short
	// decimals (0.3, not 0.30000000000000004).
	first := math.Floor(lo/stepValue(mant, exp) + 1e-9)
	last := math.Ceil(hi/stepValue(mant, exp) - 1e-9)
	for k := first; k <= last; k++ {
		ticks = append(ticks, decimal(k*float64(mant), exp))
	}
	return ticks, ticks[0], ticks[len(ticks)-1]
}

// niceStep rounds raw up to 1, 2 or 5 times 10^exp, returned as (mantissa, exp).
func niceStep(raw float64) (int, int) {
	exp := int(math.Floor(math.Log10(raw)))
	f := raw / math.Pow10(exp)
	switch {
	case f <= 1+1e-9:
		return 1, exp
	case f <= 2+1e-9:
		return 2, exp
	case f <= 5+1e-9:
		return 5, exp
	default:
		return 1, exp + 1
	}
}

func stepValue(mant, exp int) float64 { return decimal(float64(mant), exp) }

// decimal returns m * 10^exp, dividing for negative exponents so that the
// result is the closest float to the short decimal.
func decimal(m float64, exp int) float64 {
	if exp >= 0 {
		return m * math.Pow10(exp)
	}
	return m / math.Pow10(-exp)
}

// LogTicks returns tick values for a log axis covering [lo, hi] (both > 0):
// every power of ten, plus 2x and 5x when the domain spans at most two
// decades, and the domain widened to whole decades.
func LogTicks(lo, hi float64) (ticks []float64, nlo, nhi float64) {
	if lo <= 0 || hi <= 0 {
		return LinearTicks(lo, hi, 6)
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	e0 := int(math.Floor(math.Log10(lo) + 1e-9))
	e1 := int(math.Ceil(math.Log10(hi) - 1e-9))
	if e1 == e0 {
		e1++
	}
	fine := e1-e0 <= 2
	for e := e0; e <= e1; e++ {
		ticks = append(ticks, decimal(1, e))
		if fine && e < e1 {
			ticks = append(ticks, decimal(2, e), decimal(5, e))
		}
	}
	return ticks, decimal(1, e0), decimal(1, e1)
}

// FormatTick prints a tick value compactly: 1k, 20k, 1.5M, 0.25, 1e-05.
func FormatTick(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1e6 && isRound(v/1e6):
		return trim(v/1e6) + "M"
	case a >= 1e3 && isRound(v/1e3):
		return trim(v/1e3) + "k"
	case a < 1e-3:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return trim(v)
}

func isRound(v float64) bool { return math.Abs(v*10-math.Round(v*10)) < 1e-9 }

func trim(v float64) string {
	s := strconv.FormatFloat(v, 'f', 4, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
