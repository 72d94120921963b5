package server

import "strconv"

func itoa(n int) string { return strconv.Itoa(n) }

// globMatch matches s against a Redis glob pattern: * ? [abc] [^a-z] and
// backslash escapes. Iterative with single-star backtracking, so it runs in
// O(len(p)·len(s)) at worst.
func globMatch(p, s []byte) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		if px < len(p) {
			switch p[px] {
			case '*':
				for px < len(p) && p[px] == '*' {
					px++
				}
				if px == len(p) {
					return true
				}
				starP, starS = px, sx
				continue
			case '?':
				px++
				sx++
				continue
			case '[':
				if n, ok := matchClass(p[px:], s[sx]); n > 0 {
					if ok {
						px += n
						sx++
						continue
					}
				} else if s[sx] == '[' { // unterminated class: literal
					px++
					sx++
					continue
				}
			case '\\':
				if px+1 < len(p) {
					if p[px+1] == s[sx] {
						px += 2
						sx++
						continue
					}
				} else if s[sx] == '\\' {
					px++
					sx++
					continue
				}
			default:
				if p[px] == s[sx] {
					px++
					sx++
					continue
				}
			}
		}
		if starP >= 0 {
			starS++
			px, sx = starP, starS
			continue
		}
		return false
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// matchClass matches c against the class at the start of p ("[...]"). It
// returns the class's length (0 if unterminated) and whether c is in it.
func matchClass(p []byte, c byte) (int, bool) {
	i := 1
	neg := false
	if i < len(p) && p[i] == '^' {
		neg = true
		i++
	}
	match := false
	first := true
	for i < len(p) && (p[i] != ']' || first) {
		first = false
		switch {
		case p[i] == '\\' && i+1 < len(p):
			if p[i+1] == c {
				match = true
			}
			i += 2
		case i+2 < len(p) && p[i+1] == '-' && p[i+2] != ']':
			lo, hi := p[i], p[i+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				match = true
			}
			i += 3
		default:
			if p[i] == c {
				match = true
			}
			i++
		}
	}
	if i >= len(p) {
		return 0, false
	}
	return i + 1, match != neg
}
