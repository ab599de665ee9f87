//! Several runs of one benchmark: `--rounds N` measures each `--plugin` N times. The runs
//! alternate between the plugins (A, B, A, B, ...) so that a machine whose speed drifts (a
//! shared VM, a laptop on battery) slows every plugin alike, and each plugin is compared with
//! the first one round by round. [`Comparison`] holds every run and, per plugin, the median,
//! the spread and the ratio to the first plugin.

use std::fmt::Write as _;

use serde::Serialize;

use super::Report;
use super::report::thousands;

/// Every run of a comparison, in the order they ran, and what they add up to per plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Runs per plugin.
    pub rounds: u32,
    /// Every run's report: round 1 of each plugin in the order given, then round 2, ...
    pub runs: Vec<Report>,
    /// Per plugin, in the order given.
    pub plugins: Vec<PluginSummary>,
}

/// What the runs of one plugin measured.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    /// The plugin, as in its runs' reports.
    pub plugin: String,
    /// Deliveries per second over its runs.
    pub delivered_per_second: Spread,
    /// Host CPU per delivery over its runs, in microseconds (0 when nothing was delivered).
    pub host_cpu_us_per_delivery: Spread,
    /// Host CPU over its runs, in percent of one core (what idle mode measures).
    pub host_cpu_percent: Spread,
    /// Publish → handler start p99 over its runs, in milliseconds (steady mode).
    pub p99_ms: Option<Spread>,
    /// Deliveries per second as a share of the first plugin's in the same round (1.0 is as
    /// fast): the spread of the per-round ratios. `null` for the first plugin, and when the
    /// first plugin delivered nothing (idle mode). In steady mode the rate is the one asked
    /// for: compare `p99_ms` instead.
    pub ratio_to_first: Option<Spread>,
}

/// The median, lowest and highest of some figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no figures. The median of an even count is the mean of the middle two.
    pub fn of(figures: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut sorted: Vec<f64> = figures.into_iter().collect();
        sorted.sort_by(f64::total_cmp);
        let (first, last) = (*sorted.first()?, *sorted.last()?);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Spread {
            median,
            min: first,
            max: last,
        })
    }
}

impl Comparison {
    /// Sums up `runs`, which ran `rounds` rounds of `plugins` plugins in the order described
    /// on [`Comparison::runs`].
    pub fn new(rounds: u32, plugins: usize, runs: Vec<Report>) -> Comparison {
        assert_eq!(
            runs.len(),
            rounds as usize * plugins,
            "one run per plugin and round"
        );
        let of_plugin = |index: usize| runs.iter().skip(index).step_by(plugins);
        let first_rates: Vec<f64> = of_plugin(0).map(|run| run.delivered_per_second).collect();
        let summaries = (0..plugins)
            .map(|index| {
                let own = || of_plugin(index);
                let ratios: Vec<f64> = own()
                    .zip(&first_rates)
                    .filter(|(_, first)| **first > 0.0)
                    .map(|(run, first)| run.delivered_per_second / first)
                    .collect();
                PluginSummary {
                    plugin: own()
                        .next()
                        .map(|run| run.plugin.clone())
                        .unwrap_or_default(),
                    delivered_per_second: Spread::of(own().map(|run| run.delivered_per_second))
                        .expect("at least one round"),
                    host_cpu_us_per_delivery: Spread::of(own().map(host_cpu_us_per_delivery))
                        .expect("at least one round"),
                    host_cpu_percent: Spread::of(own().map(|run| run.host_cpu_percent))
                        .expect("at least one round"),
                    p99_ms: Spread::of(
                        own().filter_map(|run| run.latency.as_ref().map(|latency| latency.p99_ms)),
                    ),
                    ratio_to_first: if index == 0 { None } else { Spread::of(ratios) },
                }
            })
            .collect();
        Comparison {
            rounds,
            runs,
            plugins: summaries,
        }
    }

    /// The comparison as a human-readable table: one line per run, then one per plugin.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let Some(first) = self.runs.first() else {
            return out;
        };
        let _ = writeln!(
            out,
            "courier bench: {} mode, {} round(s) of {} plugin(s), alternating, {} Postgres",
            first.mode,
            self.rounds,
            self.plugins.len(),
            first.database
        );
        let width = self
            .plugins
            .iter()
            .map(|summary| summary.plugin.chars().count())
            .max()
            .unwrap_or(0);
        for (index, run) in self.runs.iter().enumerate() {
            let _ = writeln!(out, "  run {:>3}  {}", index + 1, run_line(run, width));
        }
        let _ = writeln!(out, "per plugin (median, lowest–highest):");
        for summary in &self.plugins {
            let rate = summary.delivered_per_second;
            let cpu = summary.host_cpu_us_per_delivery;
            let _ = writeln!(out, "  {}", summary.plugin);
            if first.mode == "idle" {
                let idle = summary.host_cpu_percent;
                let _ = writeln!(
                    out,
                    "    host CPU        {:.2}% of one core ({:.2}–{:.2})",
                    idle.median, idle.min, idle.max
                );
                continue;
            }
            let _ = writeln!(
                out,
                "    delivered/s     {} ({}–{})",
                thousands(rate.median),
                thousands(rate.min),
                thousands(rate.max)
            );
            let _ = writeln!(
                out,
                "    host CPU        {:.1} µs per delivery ({:.1}–{:.1})",
                cpu.median, cpu.min, cpu.max
            );
            if let Some(p99) = summary.p99_ms {
                let _ = writeln!(
                    out,
                    "    p99 start       {:.2} ms ({:.2}–{:.2})",
                    p99.median, p99.min, p99.max
                );
            }
            if let Some(ratio) = summary.ratio_to_first {
                let _ = writeln!(
                    out,
                    "    vs {}  {:.0}% in the same round ({:.0}–{:.0}%)",
                    self.plugins[0].plugin,
                    ratio.median * 100.0,
                    ratio.min * 100.0,
                    ratio.max * 100.0
                );
            }
        }
        out
    }
}

/// One run in a line: its plugin (padded to `width` characters), rate, host CPU per
/// delivery and peak RSS.
pub fn run_line(run: &Report, width: usize) -> String {
    if run.mode == "idle" {
        return format!(
            "{:<width$}  host CPU {:.2}% of one core",
            run.plugin, run.host_cpu_percent
        );
    }
    let mut line = format!(
        "{:<width$}  {:>9}/s  {:>6.1} µs host CPU per delivery",
        run.plugin,
        thousands(run.delivered_per_second),
        host_cpu_us_per_delivery(run)
    );
    if let Some(latency) = &run.latency {
        let _ = write!(line, "  p99 {:.2} ms", latency.p99_ms);
    }
    let _ = write!(
        line,
        "  peak RSS {:.0} MiB",
        run.peak_rss_bytes as f64 / (1 << 20) as f64
    );
    if run.retried > 0 || run.dead > 0 || run.left_in_outbox > 0 {
        let _ = write!(
            line,
            "  ({} retried, {} dead, {} left)",
            run.retried, run.dead, run.left_in_outbox
        );
    }
    line
}

fn host_cpu_us_per_delivery(run: &Report) -> f64 {
    if run.delivered == 0 {
        0.0
    } else {
        run.host_cpu_seconds * 1e6 / run.delivered as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let spread = Spread::of([4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(
            spread,
            Spread {
                median: 2.5,
                min: 1.0,
                max: 4.0
            }
        );
        assert_eq!(Spread::of([7.0, 1.0, 5.0]).unwrap().median, 5.0);
        assert_eq!(Spread::of(std::iter::empty()), None);
    }
}
