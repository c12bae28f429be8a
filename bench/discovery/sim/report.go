package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// target is the issue's: p99 from a change to every interested proxy
// knowing it.
const targetP99ms = 1000

type procResult struct {
	PID        int     `json:"pid"`
	CPUPercent float64 `json:"cpu_percent"`  // of one core, over the window
	MaxRSSMB   float64 `json:"max_rss_mib"`  // sampled in the window
	PeakRSSMB  float64 `json:"peak_rss_mib"` // VmHWM at the end: the whole run
}

type result struct {
	Label               string       `json:"label"`
	Servers             int          `json:"servers"`
	Services            int          `json:"services"`
	Instances           int          `json:"instances"`
	TTL                 string       `json:"ttl"`
	Window              float64      `json:"window_s"`
	SettleSeconds       float64      `json:"settle_s"`             // first registration → every proxy knows every instance it may call
	Settled             bool         `json:"settled"`              // false: they did not within -settle, and the window ran all the same
	RegistrationsFailed int          `json:"registrations_failed"` // of the initial ones
	Replaced            int          `json:"replaced"`
	Ops                 opCounts     `json:"ops"`
	Delays              delayStats   `json:"delays"`
	SnapshotsPerSec     float64      `json:"snapshots_per_s"`
	SnapshotMBPerSec    float64      `json:"snapshot_mb_per_s"`
	ServicesPerSnapshot float64      `json:"services_per_snapshot"`
	Ward                []procResult `json:"ward"`
	WardCPUSeconds      float64      `json:"ward_cpu_s"`
	WardUsPerOp         float64      `json:"ward_us_per_op"` // server CPU per registration, renewal or deregistration
	PostgresCPUPercent  float64      `json:"postgres_cpu_percent,omitempty"`
	SimCPUPercent       float64      `json:"sim_cpu_percent"` // the simulator itself: load on the same cores
}

func reportCmd(paths []string) error {
	var rs []result
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r result
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rs = append(rs, r)
	}
	return printTable(os.Stdout, rs)
}

func printTable(w io.Writer, rs []result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "set-up\tservers\tinstances\tsettled s\tops/s\tchanges\tdelays\tp50 ms\tp99 ms\tmax ms\tunseen\terrors\tgone\trenew p99 ms\tserver CPU %\tµs/op\tmax RSS MiB\tPG CPU %\tsnapshots/s\t")
	for _, r := range rs {
		ops := r.Ops.Registrations + r.Ops.Renewals + r.Ops.Deregistrations
		var cpu, rss []string
		for _, p := range r.Ward {
			cpu = append(cpu, fmt.Sprintf("%.0f", p.CPUPercent))
			rss = append(rss, fmt.Sprintf("%.0f", p.MaxRSSMB))
		}
		pg := "-"
		if r.PostgresCPUPercent > 0 {
			pg = fmt.Sprintf("%.0f", r.PostgresCPUPercent)
		}
		settled := fmt.Sprintf("%.0f", r.SettleSeconds)
		if !r.Settled {
			settled = "no"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.0f\t%d\t%d\t%.0f\t%.0f\t%.0f\t%d\t%d\t%d\t%.0f\t%s\t%.0f\t%s\t%s\t%.0f\t\n",
			r.Label, r.Servers, r.Instances-r.RegistrationsFailed, settled, float64(ops)/r.Window, r.Delays.Changes, r.Delays.Count,
			r.Delays.P50ms, r.Delays.P99ms, r.Delays.MaxMs, r.Delays.Unseen, r.Ops.Errors+r.Delays.Failed, r.Ops.Gone,
			r.Ops.RenewP99ms, strings.Join(cpu, "+"), r.WardUsPerOp, strings.Join(rss, "+"), pg, r.SnapshotsPerSec)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var verdict []string
	met := len(rs) > 0
	for _, r := range rs {
		ok := r.Settled && r.Delays.Count > 0 && r.Delays.Unseen == 0 && r.Delays.P99ms < targetP99ms
		met = met && ok
		verdict = append(verdict, fmt.Sprintf("%s %.0f ms over %d delays, %d unseen", r.Label, r.Delays.P99ms, r.Delays.Count, r.Delays.Unseen))
	}
	word := "not met"
	if met {
		word = "met"
	}
	_, err := fmt.Fprintf(w, "target p99 < 1 s from a change to every interested proxy: %s (%s)\n", word, strings.Join(verdict, "; "))
	return err
}
