package hostlist

import (
	"sort"
	"strconv"
	"strings"
)

// Compress is the inverse of Expand for display: names that differ only in
// a trailing number of the same width become one range, e.g. c001, c002,
// c003, gpu1 → "c[001-003],gpu1". Expand(Compress(names)) gives the same set.
func Compress(names []string) string {
	type num struct {
		v     int64
		digit string
	}
	groups := map[string][]num{} // prefix + "\x00" + width → numbers
	var order []string
	var plain []string
	// Padded widths per prefix: c099 and c100 both belong to c[001-100].
	paddedWidth := map[string]bool{}
	for _, n := range names {
		i := len(n)
		for i > 0 && n[i-1] >= '0' && n[i-1] <= '9' {
			i--
		}
		if padded(n[i:]) {
			paddedWidth[n[:i]+"\x00"+strconv.Itoa(len(n)-i)] = true
		}
	}
	for _, n := range names {
		i := len(n)
		for i > 0 && n[i-1] >= '0' && n[i-1] <= '9' {
			i--
		}
		digits := n[i:]
		if digits == "" || len(digits) > maxDigits || strings.ContainsAny(n[:i], "[],") {
			plain = append(plain, n)
			continue
		}
		v, _ := strconv.ParseInt(digits, 10, 64)
		width := 0 // unpadded numbers of any width join, as Expand prints them
		if padded(digits) || paddedWidth[n[:i]+"\x00"+strconv.Itoa(len(digits))] {
			width = len(digits)
		}
		k := n[:i] + "\x00" + strconv.Itoa(width)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], num{v, digits})
	}
	sort.Strings(order)
	var out []string
	for _, k := range order {
		prefix, _, _ := strings.Cut(k, "\x00")
		nums := groups[k]
		sort.Slice(nums, func(i, j int) bool { return nums[i].v < nums[j].v })
		if len(nums) == 1 {
			out = append(out, prefix+nums[0].digit)
			continue
		}
		var ranges []string
		for i := 0; i < len(nums); {
			j := i
			for j+1 < len(nums) && nums[j+1].v <= nums[j].v+1 {
				j++
			}
			if i == j {
				ranges = append(ranges, nums[i].digit)
			} else {
				ranges = append(ranges, nums[i].digit+"-"+nums[j].digit)
			}
			i = j + 1
		}
		out = append(out, prefix+"["+strings.Join(ranges, ",")+"]")
	}
	sort.Strings(plain)
	return strings.Join(append(out, plain...), ",")
}
