package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/procs"
)

// newCores builds the GOMAXPROCS controller of server.cores = "adaptive"
// (the default); nil for "all", which leaves Go's default in force.
func newCores(c *serverConfig, logger *slog.Logger) (*procs.Controller, error) {
	if c.Cores == "all" {
		return nil, nil
	}
	return procs.New(procs.Config{}, logger.With("component", "procs"))
}

// runCores runs pc, if any.
func runCores(pc *procs.Controller) func(context.Context) error {
	return func(ctx context.Context) error {
		if pc == nil {
			return nil
		}
		return pc.Run(ctx)
	}
}

// coresCollector exports the controller's state.
type coresCollector struct {
	procs            func() (cur, max int, changes uint64)
	cur, max, change *prometheus.Desc
}

func newCoresCollector(procs func() (cur, max int, changes uint64)) *coresCollector {
	return &coresCollector{procs: procs,
		cur:    desc("cores_in_use", "Cores running Go code at once (GOMAXPROCS) as server.cores = \"adaptive\" sets it: 1 while the load fits in one core."),
		max:    desc("cores_max", "Cores under load: the GOMAXPROCS environment variable, else the CPUs the process may use within its cgroup limit (as last read: at start and each time the load needed more than one)."),
		change: desc("cores_changes_total", "Changes of GOMAXPROCS by server.cores = \"adaptive\"."),
	}
}

func (c *coresCollector) Describe(ch chan<- *prometheus.Desc) {
	describeAll(ch, c.cur, c.max, c.change)
}

func (c *coresCollector) Collect(ch chan<- prometheus.Metric) {
	cur, max, n := c.procs()
	gauge(ch, c.cur, float64(cur))
	gauge(ch, c.max, float64(max))
	counter(ch, c.change, n)
}
