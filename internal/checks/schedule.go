package checks

// schedule is a min-heap of checks by due time, for container/heap. Each
// check records its index, so that a removed target's checks leave the
// heap in O(log n). The Monitor's mutex guards it.
type schedule []*check

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].due.Before(s[j].due) }

func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].idx = i
	s[j].idx = j
}

func (s *schedule) Push(x any) {
	c := x.(*check)
	c.idx = len(*s)
	*s = append(*s, c)
}

func (s *schedule) Pop() any {
	old := *s
	n := len(old) - 1
	c := old[n]
	old[n] = nil
	c.idx = -1
	*s = old[:n]
	return c
}
