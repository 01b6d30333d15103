package stats

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChiSquareUniformKnownValues(t *testing.T) {
	// Perfectly uniform: statistic 0, p 1.
	r, err := ChiSquareUniform([]int{200, 200, 200})
	require.NoError(t, err)
	require.Equal(t, 0.0, r.Statistic)
	require.Equal(t, 2, r.DF)
	require.InDelta(t, 1.0, r.P, 1e-12)

	// 600 requests all on one of three backends: hopeless.
	r, err = ChiSquareUniform([]int{600, 0, 0})
	require.NoError(t, err)
	require.InDelta(t, 1200.0, r.Statistic, 1e-9)
	require.Less(t, r.P, 1e-100)

	// df=1, x2=3.841458820694124 is the 5% critical value.
	r, err = ChiSquareTest([]int{60, 40}, []float64{50, 50})
	require.NoError(t, err)
	require.InDelta(t, 4.0, r.Statistic, 1e-12)
	require.InDelta(t, 0.0455, r.P, 1e-4)
}

func TestChiSquareRejectsSmallSamples(t *testing.T) {
	_, err := ChiSquareUniform([]int{3, 2, 4})
	require.ErrorContains(t, err, "sample too small")
	_, err = ChiSquareUniform([]int{30})
	require.Error(t, err)
}

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{5, 1, 4, 2, 3})
	require.Equal(t, Summary{N: 5, Min: 1, Median: 3, P90: 5, P99: 5, Max: 5}, s)
	s = Summarize([]float64{4, 1, 3, 2})
	require.Equal(t, 2.5, s.Median)
	require.Equal(t, Summary{}, Summarize(nil))
}
