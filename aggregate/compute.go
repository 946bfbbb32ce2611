package aggregate

import (
	"math"
	"slices"
	"strconv"

	"github.com/polymur/polymur/route"
)

// appendValue writes what c computes over bucket b, formatted as
// carbon-c-relay prints it: count as an integer, the others with six
// decimals (printf's %f). sorted ranks by true order, not carbon-c-relay's.
func appendValue(dst []byte, c route.Compute, b *bucket, sorted bool) []byte {
	if c.Func == route.Count {
		return strconv.AppendInt(dst, int64(b.n), 10)
	}
	return strconv.AppendFloat(dst, compute(c, b, sorted), 'f', 6, 64)
}

// compute is c over b. Median is the 50th percentile. A percentile is
// carbon-c-relay's rank: the k-th value with k = (n·P + 90) / 100 in
// integers (a rank below the first value gives 0, as it does there), of
// the values in carbon-c-relay's order (crelayOrder) or, with sorted, in
// true order. Variance and stddev are the population's.
func compute(c route.Compute, b *bucket, sorted bool) float64 {
	switch c.Func {
	case route.Sum:
		return b.sum
	case route.Max:
		return b.max
	case route.Min:
		return b.min
	case route.Average:
		return b.sum / float64(b.n)
	case route.Median, route.Percentile:
		return percentile(b.vals, c.Pct, sorted)
	case route.Variance:
		return variance(b.vals)
	case route.Stddev:
		return math.Sqrt(variance(b.vals))
	}
	return float64(b.n)
}

// percentile orders vals and returns the value of rank (n·p + 90) / 100.
func percentile(vals []float64, p int, sorted bool) float64 {
	k := (len(vals)*p + 90) / 100
	if k == 0 || len(vals) == 0 {
		return 0
	}
	if sorted {
		slices.Sort(vals)
	} else {
		crelayOrder(vals, make([]float64, len(vals)))
	}
	return vals[min(k, len(vals))-1]
}

// crelayOrder puts vals (in arrival order) in the order carbon-c-relay
// ranks them: its C library's stable merge sort with a comparison that is
// the integer part of the difference, so values less than 1 apart compare
// equal and keep their arrival order (and the result is not always
// sorted). Measured against carbon-c-relay 3.7.3 on Debian; differences
// beyond the int range compare as INT_MIN does on amd64. tmp holds
// len(vals).
func crelayOrder(vals, tmp []float64) {
	n := len(vals)
	if n <= 1 {
		return
	}
	n1 := n / 2
	crelayOrder(vals[:n1], tmp)
	crelayOrder(vals[n1:], tmp)
	i, j, k := 0, n1, 0
	for i < n1 && j < n {
		if crelayCmp(vals[i], vals[j]) <= 0 {
			tmp[k] = vals[i]
			i++
		} else {
			tmp[k] = vals[j]
			j++
		}
		k++
	}
	k += copy(tmp[k:], vals[i:n1])
	copy(vals, tmp[:k]) // what is left of the second half is in place
}

// crelayCmp is (int)(a - b) as compiled C computes it on amd64.
func crelayCmp(a, b float64) int64 {
	d := a - b
	if math.IsNaN(d) || d >= 1<<31 || d < -(1<<31) {
		return math.MinInt32
	}
	return int64(d)
}

// variance is the population variance, in two passes (the mean first).
func variance(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	var sum float64
	for _, v := range vals {
		sum += v
	}
	mean := sum / float64(len(vals))
	var sq float64
	for _, v := range vals {
		sq += (v - mean) * (v - mean)
	}
	return sq / float64(len(vals))
}
