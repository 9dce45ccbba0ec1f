package periph

import (
	"slices"
)

// sortBy sorts s by the integer tuple key, so that i2c-10 follows i2c-2.
func sortBy[T any](s []T, key func(T) []int) {
	slices.SortStableFunc(s, func(a, b T) int { return slices.Compare(key(a), key(b)) })
}
