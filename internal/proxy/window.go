package proxy

import "time"

// window counts two kinds of events over a sliding time span, split into
// buckets that expire one by one. It is not safe for concurrent use.
type window struct {
	width   time.Duration // of one bucket
	buckets []counts
	head    int       // current bucket
	headAt  time.Time // start of the current bucket
}

type counts struct{ a, b int64 }

const windowBuckets = 10

func newWindow(span time.Duration) window {
	w := span / windowBuckets
	if w <= 0 {
		w = 1
	}
	return window{width: w, buckets: make([]counts, windowBuckets)}
}

// rotate expires the buckets that are older than the span at now.
func (w *window) rotate(now time.Time) {
	if w.headAt.IsZero() {
		w.headAt = now
		return
	}
	steps := int64(now.Sub(w.headAt) / w.width)
	if steps <= 0 {
		return
	}
	if steps >= int64(len(w.buckets)) {
		clear(w.buckets)
		w.headAt = now
		return
	}
	for range steps {
		w.head = (w.head + 1) % len(w.buckets)
		w.buckets[w.head] = counts{}
	}
	w.headAt = w.headAt.Add(time.Duration(steps) * w.width)
}

func (w *window) add(now time.Time, a, b int64) {
	w.rotate(now)
	w.buckets[w.head].a += a
	w.buckets[w.head].b += b
}

func (w *window) sum(now time.Time) (a, b int64) {
	w.rotate(now)
	for _, c := range w.buckets {
		a += c.a
		b += c.b
	}
	return a, b
}

func (w *window) reset() {
	clear(w.buckets)
	w.headAt = time.Time{}
}
