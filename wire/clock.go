package wire

import "time"

// monoBase anchors monoNow's readings.
var monoBase = time.Now()

// monoNow is the time since monoBase, from the monotonic clock alone: one
// clock read, where time.Now makes two (the wall clock too; a tenth of a
// microsecond on this project's VM). The request paths time themselves
// with it, a few times per request.
func monoNow() time.Duration { return time.Since(monoBase) }
