package store

import "github.com/prometheus/client_golang/prometheus"

// Collector exports pebble's figures for s in Prometheus form. Each scrape
// reads pebble's metrics once.
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
	descTables     = prometheus.NewDesc("rumor_store_sstables", "Live sstables.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDisk, descMemtable, descCacheSize, descCacheHits, descCacheMiss,
		descWALBytes, descFlushes, descCompaction, descReadAmp, descTables} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.db.Metrics()
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
}
