package main

import (
	"math"
	"slices"
	"time"
)

// quantile is the q-quantile of xs by linear interpolation between the
// closest ranks (the usual "type 7" definition: the median of an even count
// is the mean of the two middle values).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

func millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

func ints(xs []int) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}

// medianIndex is the index of the sample closest to the median wall time:
// the run whose timeline the report shows.
func medianIndex(ds []time.Duration) int {
	if len(ds) == 0 {
		return -1
	}
	m := quantile(millis(ds), 0.5)
	best := 0
	for i, d := range ds {
		if math.Abs(float64(d)/float64(time.Millisecond)-m) < math.Abs(float64(ds[best])/float64(time.Millisecond)-m) {
			best = i
		}
	}
	return best
}
