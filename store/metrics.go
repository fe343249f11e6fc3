package store

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Collector exports pebble's figures for s, and the store's own, in
// Prometheus form. Each scrape reads pebble's metrics once.
func (s *Store) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Store }

var (
	descDisk       = prometheus.NewDesc("rumor_store_disk_bytes", "Disk space used by the store (pebble).", nil, nil)
	descMemtable   = prometheus.NewDesc("rumor_store_memtable_bytes", "Bytes in pebble memtables.", nil, nil)
	descCacheSize  = prometheus.NewDesc("rumor_store_block_cache_bytes", "Bytes in pebble's block cache.", nil, nil)
	descCacheHits  = prometheus.NewDesc("rumor_store_block_cache_hits_total", "Block cache hits.", nil, nil)
	descCacheMiss  = prometheus.NewDesc("rumor_store_block_cache_misses_total", "Block cache misses.", nil, nil)
	descWALBytes   = prometheus.NewDesc("rumor_store_wal_bytes_written_total", "Bytes written to the write-ahead log.", nil, nil)
	descFlushes    = prometheus.NewDesc("rumor_store_flushes_total", "Memtable flushes.", nil, nil)
	descCompaction = prometheus.NewDesc("rumor_store_compactions_total", "Compactions.", nil, nil)
	descReadAmp    = prometheus.NewDesc("rumor_store_read_amplification", "Pebble read amplification (sublevels and levels a read may visit).", nil, nil)
	descObjBytes   = prometheus.NewDesc("rumor_store_object_cache_bytes", "Bytes held by the object cache in front of pebble.", nil, nil)
	descObjEntries = prometheus.NewDesc("rumor_store_object_cache_entries", "Keys held by the object cache.", nil, nil)
	descObjHits    = prometheus.NewDesc("rumor_store_object_cache_hits_total", "Object cache hits.", nil, nil)
	descObjMisses  = prometheus.NewDesc("rumor_store_object_cache_misses_total", "Object cache misses.", nil, nil)
	descTables     = prometheus.NewDesc("rumor_store_sstables", "Live sstables.", nil, nil)
	descFilter     = prometheus.NewDesc("rumor_store_key_filter_bytes", "Bytes of the filter of held keys that spares writes to new keys a search of pebble.", nil, nil)
	descFilterOn   = prometheus.NewDesc("rumor_store_key_filter_ready", "1 once the key filter has scanned the store's keys and answers lookups.", nil, nil)
	descHints      = prometheus.NewDesc("rumor_store_hints", "Hint records: objects held for another node until handoff, by that node.", []string{"target"}, nil)
	descSpares     = prometheus.NewDesc("rumor_store_wal_logs_created_total", "Write-ahead logs pebble created (not recycled), by whether they were made from a spare written ahead of time (whose syncs then commit no file size change) or appended from empty.", []string{"from"}, nil)
	descSyncs      = prometheus.NewDesc("rumor_store_file_syncs_total", "Syncs of the store's files (WAL, sstables, directories) by how they were done: through Linux AIO (the goroutine parks while the disk works), or the blocking system call when the kernel refused the request.", []string{"via"}, nil)
	descFsync      = prometheus.NewDesc("rumor_store_wal_fsync_seconds", "Fsyncs of the write-ahead log, by how long each took (with --sync, a write waits for the one after it arrives).", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDisk, descMemtable, descCacheSize, descCacheHits, descCacheMiss,
		descWALBytes, descFlushes, descCompaction, descReadAmp, descTables,
		descObjBytes, descObjEntries, descObjHits, descObjMisses, descFilter, descFilterOn, descHints, descFsync, descSyncs, descSpares} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.Metrics()
	var tables int64
	for _, l := range m.Levels {
		tables += l.TablesCount
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	count := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(descDisk, float64(m.DiskSpaceUsage()))
	gauge(descMemtable, float64(m.MemTable.Size))
	gauge(descCacheSize, float64(m.BlockCache.Size))
	count(descCacheHits, float64(m.BlockCache.Hits))
	count(descCacheMiss, float64(m.BlockCache.Misses))
	count(descWALBytes, float64(m.WAL.BytesWritten))
	count(descFlushes, float64(m.Flush.Count))
	count(descCompaction, float64(m.Compact.Count))
	gauge(descReadAmp, float64(m.ReadAmp()))
	gauge(descTables, float64(tables))
	st := c.s.CacheStats()
	gauge(descObjBytes, float64(st.Bytes))
	gauge(descObjEntries, float64(st.Entries))
	count(descObjHits, float64(st.Hits))
	count(descObjMisses, float64(st.Misses))
	gauge(descFilter, float64(c.s.keys.bytes()))
	ready := 0.0
	if c.s.keys.complete.Load() {
		ready = 1
	}
	gauge(descFilterOn, ready)
	if aio, taken, fellBack := fsyncStats(c.s.fs); aio {
		ch <- prometheus.MustNewConstMetric(descSyncs, prometheus.CounterValue, float64(taken), "aio")
		ch <- prometheus.MustNewConstMetric(descSyncs, prometheus.CounterValue, float64(fellBack), "syscall")
	}
	if sp := c.s.spares; sp != nil {
		ch <- prometheus.MustNewConstMetric(descSpares, prometheus.CounterValue, float64(sp.used.Load()), "spare")
		ch <- prometheus.MustNewConstMetric(descSpares, prometheus.CounterValue, float64(sp.missed.Load()), "empty")
	}
	if h := m.LogWriter.FsyncLatency; h != nil {
		if f, err := fsyncHistogram(h); err == nil {
			ch <- f
		}
	}
	// A label value must be UTF-8; a target name need not be.
	hints := map[string]int{}
	for target, n := range c.s.Hints() {
		hints[strings.ToValidUTF8(target, "\uFFFD")] += n
	}
	for target, n := range hints {
		ch <- prometheus.MustNewConstMetric(descHints, prometheus.GaugeValue, float64(n), target)
	}
}

// fsyncHistogram turns pebble's WAL fsync histogram (nanoseconds, 100
// buckets: every 100 µs up to 5 ms, then exponential up to 10 s) into
// seconds, keeping every bucket up to 1 ms and every fifth after: the
// bounds kept are pebble's, so their counts are exact.
func fsyncHistogram(h prometheus.Histogram) (prometheus.Metric, error) {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		return nil, err
	}
	hist := m.GetHistogram()
	buckets := map[float64]uint64{}
	for i, b := range hist.GetBucket() {
		if ub := b.GetUpperBound(); ub > 0 && (ub <= 1e6 || i%5 == 0) {
			buckets[ub/1e9] = b.GetCumulativeCount()
		}
	}
	return prometheus.NewConstHistogram(descFsync, hist.GetSampleCount(), hist.GetSampleSum()/1e9, buckets)
}

// CacheStats describes the object cache.
type CacheStats struct {
	Bytes, Entries, Hits, Misses, Evictions int64
}

// CacheStats returns the object cache's figures (zero if it is disabled).
func (s *Store) CacheStats() CacheStats {
	if s.objs == nil {
		return CacheStats{}
	}
	b, e := s.objs.size()
	return CacheStats{Bytes: b, Entries: e, Hits: s.objs.hits.Load(), Misses: s.objs.misses.Load(), Evictions: s.objs.evictions.Load()}
}
