package proxy

import "sync"

// Buffers is the copy-buffer pool shared by every reverse proxy and stream
// splice of the process (32 KiB buffers).
var Buffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

// Get returns a 32 KiB buffer.
func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

// Put returns buf to the pool.
func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
